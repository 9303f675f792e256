package raftadapter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Snapshot data, as stored in raft's snapshots and sent to followers, wraps
// the state machine's bytes together with this package's replicated state:
//
//	bytes 0-3   snapMagic
//	byte 4      snapVersion
//	uvarint     length of the dedup state, then the dedup state
//	...         the state machine's bytes (StateMachine.Snapshot's WriteTo)
//	last 4      CRC-32C (Castagnoli) of everything before, big endian
const (
	snapMagic   = "RASN"
	snapVersion = 1
	snapCRCLen  = 4
)

var crcTable = crc32.MakeTable(crc32.Castagnoli) // read-only

// snapJob is a state machine capture to serialize off the raft loop.
type snapJob struct {
	index uint64
	cs    raftpb.ConfState
	dedup []byte // encoded dedup state as of index
	w     io.WriterTo
}

type snapResult struct {
	index uint64
	cs    raftpb.ConfState
	data  []byte
	err   error
}

// runSnapshotter is the snapshot writer goroutine: it serializes one capture
// at a time and hands the bytes back to the raft loop. It owns nothing but
// the job in hand and exits when the loop closes jobs.
func runSnapshotter(jobs <-chan snapJob, results chan<- snapResult) {
	for job := range jobs {
		res := snapResult{index: job.index, cs: job.cs}
		res.data, res.err = writeSnapshot(job.dedup, job.w)
		results <- res // capacity 1 and one job at a time: never blocks
	}
}

// writeSnapshot produces snapshot data: the header and dedup state, what w
// writes, and the checksum.
func writeSnapshot(dedup []byte, w io.WriterTo) (data []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("raftadapter: snapshot writer panicked: %v", r)
		}
	}()
	var buf bytes.Buffer
	buf.Grow(len(snapMagic) + 1 + binary.MaxVarintLen64 + len(dedup))
	buf.WriteString(snapMagic)
	buf.WriteByte(snapVersion)
	buf.Write(binary.AppendUvarint(nil, uint64(len(dedup))))
	buf.Write(dedup)
	if _, err := w.WriteTo(&buf); err != nil {
		return nil, err
	}
	return binary.BigEndian.AppendUint32(buf.Bytes(), crc32.Checksum(buf.Bytes(), crcTable)), nil
}

// decodeSnapshot checks snapshot data and splits it into the dedup state
// and the state machine's bytes. Errors wrap ErrBadSnapshot.
func decodeSnapshot(data []byte) (*dedup, []byte, error) {
	bad := func(format string, args ...any) (*dedup, []byte, error) {
		return nil, nil, fmt.Errorf("%w: %s", ErrBadSnapshot, fmt.Sprintf(format, args...))
	}
	if len(data) < len(snapMagic)+1+snapCRCLen || string(data[:len(snapMagic)]) != snapMagic {
		return bad("missing header (%d bytes)", len(data))
	}
	if v := data[len(snapMagic)]; v != snapVersion {
		return bad("format version %d, want %d", v, snapVersion)
	}
	body, sum := data[:len(data)-snapCRCLen], binary.BigEndian.Uint32(data[len(data)-snapCRCLen:])
	if got := crc32.Checksum(body, crcTable); got != sum {
		return bad("checksum %08x, want %08x", got, sum)
	}
	rest := body[len(snapMagic)+1:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) {
		return bad("bad dedup state length")
	}
	rest = rest[k:]
	d, err := decodeDedup(rest[:n])
	if err != nil {
		return bad("dedup state: %v", err)
	}
	return d, rest[n:], nil
}

// maybeSnapshot captures the state machine once SnapshotCount entries have
// been applied since the last snapshot; serialization runs on the snapshot
// writer goroutine.
func (l *loop) maybeSnapshot() {
	if l.snapshotting || l.applied <= l.snapIndex {
		return
	}
	if !l.snapshotNow && l.applied < l.lastSnapAttempt+l.cfg.SnapshotCount {
		return
	}
	l.snapshotNow = false
	l.lastSnapAttempt = l.applied
	w, err := l.sm.Snapshot()
	if err != nil {
		l.log.Warn("state machine snapshot failed", "index", l.applied, "err", err)
		return
	}
	cs := l.confState
	l.snapshotting = true
	l.n.snapInFlight.Store(true)
	l.snapJobc <- snapJob{index: l.applied, cs: cs, dedup: l.dedup.appendTo(nil), w: w}
}

// finishSnapshot stores a serialized snapshot and compacts the log, keeping
// SnapshotCatchUpEntries entries for followers that are a little behind.
func (l *loop) finishSnapshot(res snapResult) {
	l.snapshotting = false
	l.n.snapInFlight.Store(false)
	// One may have come due while this one was being written.
	defer l.maybeSnapshot()
	if res.err != nil {
		l.log.Warn("writing snapshot failed", "index", res.index, "err", res.err)
		return
	}
	if res.index <= l.snapIndex {
		return // a newer snapshot from the leader arrived meanwhile
	}
	if last, err := l.storage.LastIndex(); err != nil || res.index > last {
		return
	}
	if _, err := l.storage.CreateSnapshot(res.index, &res.cs, res.data); err != nil {
		if !errors.Is(err, raft.ErrSnapOutOfDate) {
			l.log.Warn("storing snapshot failed", "index", res.index, "err", err)
		}
		return
	}
	l.snapIndex = res.index
	l.c.snapshotsTaken.Add(1)
	compactTo := uint64(0)
	if res.index > l.cfg.SnapshotCatchUpEntries {
		compactTo = res.index - l.cfg.SnapshotCatchUpEntries
		if err := l.storage.Compact(compactTo); err != nil && !errors.Is(err, raft.ErrCompacted) {
			l.log.Warn("compacting log failed", "index", compactTo, "err", err)
		}
	}
	l.log.Info("snapshot stored", "index", res.index, "bytes", len(res.data), "compacted_to", compactTo)
}

// dropStaleSnapshots filters out snapshot messages whose membership does not
// include their recipient. raft sends the snapshot held in storage, which
// predates members added since; the recipient would refuse it. Such a send is
// reported as failed (raft retries later) and a fresh snapshot, which
// includes the new member, is taken right away.
func (l *loop) dropStaleSnapshots(msgs []raftpb.Message) []raftpb.Message {
	stale := func(m *raftpb.Message) bool {
		if m.Type != raftpb.MsgSnap || m.Snapshot == nil {
			return false
		}
		cs := m.Snapshot.Metadata.ConfState
		return !slices.Contains(cs.Voters, m.To) && !slices.Contains(cs.Learners, m.To)
	}
	if !slices.ContainsFunc(msgs, func(m raftpb.Message) bool { return stale(&m) }) {
		return msgs
	}
	out := make([]raftpb.Message, 0, len(msgs))
	for i := range msgs {
		if !stale(&msgs[i]) {
			out = append(out, msgs[i])
			continue
		}
		l.log.Debug("snapshot predates recipient; taking a fresh one", "to", fmt.Sprintf("%x", msgs[i].To),
			"index", msgs[i].Snapshot.Metadata.Index)
		l.n.in.pushSnapReport(msgs[i].To, raft.SnapshotFailure)
		l.snapshotNow = true
	}
	return out
}
