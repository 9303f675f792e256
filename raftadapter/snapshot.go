package raftadapter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Snapshot data, as sent to followers, wraps the state machine's bytes
// together with this package's replicated state:
//
//	bytes 0-3   snapMagic
//	byte 4      snapVersion
//	uvarint     length of the dedup state, then the dedup state
//	uvarint     count of removed member ids, then each as 8 bytes big endian
//	            (version 2; version 1 data has no removed set)
//	...         the state machine's bytes (StateMachine.Snapshot's WriteTo)
//	last 4      CRC-32C (Castagnoli) of everything before, big endian
//
// The snapshot kept in raft's MemoryStorage does not hold that data: its Data
// is a token (snapTokenMagic, then the snapshot index as 8 bytes big endian)
// and the loop keeps the state machine's capture for that index instead. The
// data is built from the capture only when raft sends the snapshot to a
// follower, and dropped again once the sends are over. A token never leaves
// the node; if one arrived anyway it would fail to decode (wrong magic).
const (
	snapMagic      = "RASN"
	snapVersion    = 2
	snapCRCLen     = 4
	snapTokenMagic = "RATK"
	snapTokenLen   = len(snapTokenMagic) + 8
	// snapDataKeepElections bounds, in election timeouts, how long built
	// snapshot data is kept for sharing when the transport does not report
	// the outcome of a send.
	snapDataKeepElections = 10
)

var crcTable = crc32.MakeTable(crc32.Castagnoli) // read-only

// errSnapshotChanged is returned when a capture writes different lengths on
// two calls of WriteTo.
var errSnapshotChanged = errors.New("raftadapter: state machine snapshot changed between two writes")

// snapToken is the Data of the snapshot stored in MemoryStorage for index.
func snapToken(index uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(snapTokenMagic), index)
}

// parseSnapToken returns the index a token stands for.
func parseSnapToken(data []byte) (uint64, bool) {
	if len(data) != snapTokenLen || string(data[:len(snapTokenMagic)]) != snapTokenMagic {
		return 0, false
	}
	return binary.BigEndian.Uint64(data[len(snapTokenMagic):]), true
}

// snapCapture is what the loop keeps for the snapshot in storage: the state
// machine's capture and the encoded dedup state as of index.
type snapCapture struct {
	index   uint64
	dedup   []byte
	removed []byte // the encoded removed set as of index
	w       io.WriterTo
}

// snapJob is a capture to serialize off the raft loop.
type snapJob struct {
	index   uint64
	dedup   []byte
	removed []byte
	w       io.WriterTo
}

type snapResult struct {
	index uint64
	data  []byte
	err   error
}

// snapSends is the loop's state of snapshots on their way to followers.
type snapSends struct {
	writing bool              // a job is with the snapshot writer
	waiting []*raftpb.Message // MsgSnaps (token data) waiting for their index's data
	// data is built snapshot data for dataIndex, shared by the sends of that
	// index while any is in flight (dataTick: loop tick when it was built).
	data      []byte
	dataIndex uint64
	dataTick  uint64
	inflight  map[uint64]uint64 // recipient -> index sent to it, outcome not yet reported
}

// keep makes data the shared data of index, built at tick.
func (s *snapSends) keep(index uint64, data []byte, tick uint64, c *counters) {
	s.data, s.dataIndex, s.dataTick = data, index, tick
	c.snapshotBytesHeld.Store(int64(len(data)))
}

// release drops the shared data (sends in flight keep their own reference).
func (s *snapSends) release(c *counters) {
	s.data, s.dataIndex = nil, 0
	clear(s.inflight)
	c.snapshotBytesHeld.Store(0)
}

// runSnapshotter is the snapshot writer goroutine: it serializes one capture
// at a time and hands the bytes back to the raft loop. It owns nothing but
// the job in hand and exits when the loop closes jobs.
func runSnapshotter(jobs <-chan snapJob, results chan<- snapResult) {
	for job := range jobs {
		res := snapResult{index: job.index}
		res.data, res.err = writeSnapshot(job.dedup, job.removed, job.w)
		results <- res // capacity 1 and one job at a time: never blocks
	}
}

// writeSnapshot produces snapshot data: the header, the dedup state and the
// encoded removed set, what w writes, and the checksum. It runs w.WriteTo
// twice, first to learn the size, so the data is allocated once and exactly.
func writeSnapshot(dedup, removed []byte, w io.WriterTo) (data []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			data, err = nil, fmt.Errorf("raftadapter: snapshot writer panicked: %v", r)
		}
	}()
	var cw countWriter
	if _, err := w.WriteTo(&cw); err != nil {
		return nil, err
	}
	head := len(snapMagic) + 1 + len(binary.AppendUvarint(nil, uint64(len(dedup)))) + len(dedup) + len(removed)
	if cw.n > math.MaxInt-int64(head+snapCRCLen) {
		return nil, fmt.Errorf("raftadapter: state machine snapshot of %d bytes is too large", cw.n)
	}
	size := head + int(cw.n)
	buf := make([]byte, 0, size+snapCRCLen)
	buf = append(buf, snapMagic...)
	buf = append(buf, snapVersion)
	buf = binary.AppendUvarint(buf, uint64(len(dedup)))
	buf = append(buf, dedup...)
	buf = append(buf, removed...)
	fw := &fixedWriter{buf: buf, limit: size}
	if _, err := w.WriteTo(fw); err != nil {
		return nil, err
	}
	if len(fw.buf) != size {
		return nil, fmt.Errorf("%w: %d bytes, then %d", errSnapshotChanged, cw.n, len(fw.buf)-head)
	}
	return binary.BigEndian.AppendUint32(fw.buf, crc32.Checksum(fw.buf, crcTable)), nil
}

// countWriter counts what is written to it and keeps nothing.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// fixedWriter appends to buf up to limit bytes and fails beyond.
type fixedWriter struct {
	buf   []byte
	limit int
}

func (f *fixedWriter) Write(p []byte) (int, error) {
	if len(p) > f.limit-len(f.buf) {
		return 0, fmt.Errorf("%w: more bytes than the first time", errSnapshotChanged)
	}
	f.buf = append(f.buf, p...)
	return len(p), nil
}

// decodeSnapshot checks snapshot data and splits it into the dedup state,
// the removed set and the state machine's bytes. Errors wrap ErrBadSnapshot.
func decodeSnapshot(data []byte) (*dedup, map[uint64]struct{}, []byte, error) {
	bad := func(format string, args ...any) (*dedup, map[uint64]struct{}, []byte, error) {
		return nil, nil, nil, fmt.Errorf("%w: %s", ErrBadSnapshot, fmt.Sprintf(format, args...))
	}
	if len(data) < len(snapMagic)+1+snapCRCLen || string(data[:len(snapMagic)]) != snapMagic {
		return bad("missing header (%d bytes)", len(data))
	}
	v := data[len(snapMagic)]
	if v != 1 && v != snapVersion {
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
	rest = rest[n:]
	removed := map[uint64]struct{}{}
	if v >= 2 {
		if removed, rest, err = decodeRemoved(rest); err != nil {
			return bad("%v", err)
		}
	}
	return d, removed, rest, nil
}

// maybeSnapshot takes a snapshot once SnapshotCount entries have been
// applied since the last one: it captures the state machine (cheap: the
// capture is serialized only if a follower needs it), stores a token
// snapshot in raft's storage and compacts the log, keeping
// SnapshotCatchUpEntries entries for followers that are a little behind.
func (l *loop) maybeSnapshot() {
	if l.applied <= l.snapIndex {
		return
	}
	if !l.snapshotNow && l.applied < l.lastSnapAttempt+l.cfg.SnapshotCount {
		return
	}
	l.snapshotNow = false
	l.lastSnapAttempt = l.applied
	index := l.applied
	if last, err := l.storage.LastIndex(); err != nil || index > last {
		return
	}
	w, err := l.sm.Snapshot()
	if err != nil {
		l.log.Warn("state machine snapshot failed", "index", index, "err", err)
		return
	}
	if _, err := l.storage.CreateSnapshot(index, l.confState, snapToken(index)); err != nil {
		if !errors.Is(err, raft.ErrSnapOutOfDate) {
			l.log.Warn("storing snapshot failed", "index", index, "err", err)
		}
		return
	}
	l.keepCapture(index, w)
	l.snapIndex = index
	l.c.snapshotsTaken.Add(1)
	compactTo := uint64(0)
	if index > l.cfg.SnapshotCatchUpEntries {
		compactTo = index - l.cfg.SnapshotCatchUpEntries
		if err := l.storage.Compact(compactTo); err != nil && !errors.Is(err, raft.ErrCompacted) {
			l.log.Warn("compacting log failed", "index", compactTo, "err", err)
		}
	}
	l.log.Info("snapshot stored", "index", index, "compacted_to", compactTo)
}

// keepCapture makes w (the state machine as of index, with the current dedup
// state) the capture of the snapshot in storage, releasing the previous one.
func (l *loop) keepCapture(index uint64, w io.WriterTo) {
	l.capture = &snapCapture{index: index, dedup: l.dedup.appendTo(nil), removed: appendRemoved(nil, l.removedIDs), w: w}
	if l.sends.dataIndex != index {
		l.sends.release(l.c)
	}
}

// captureRestored keeps a capture of the state machine just restored from a
// snapshot at index, whose storage copy holds a token.
func (l *loop) captureRestored(index uint64) {
	w, err := l.sm.Snapshot()
	if err != nil {
		// Without a capture this member cannot send the snapshot in its
		// storage; it takes a new one at the next applied entry.
		l.log.Warn("state machine snapshot after restore failed", "index", index, "err", err)
		l.capture = nil
		l.sends.release(l.c)
		l.snapshotNow = true
		return
	}
	l.keepCapture(index, w)
}

// routeSnapshots takes the MsgSnaps out of msgs: their data is a token. A
// snapshot whose data is at hand goes out with the others; the rest wait for
// the snapshot writer.
func (l *loop) routeSnapshots(msgs []*raftpb.Message) []*raftpb.Message {
	if !slices.ContainsFunc(msgs, func(m *raftpb.Message) bool { return m.GetType() == raftpb.MsgSnap }) {
		return msgs
	}
	out := make([]*raftpb.Message, 0, len(msgs))
	for _, m := range msgs {
		if m.GetType() != raftpb.MsgSnap || m.GetSnapshot() == nil {
			out = append(out, m)
			continue
		}
		index, ok := parseSnapToken(m.GetSnapshot().GetData())
		if !ok {
			out = append(out, m) // already carries real data
			continue
		}
		s := &l.sends
		switch {
		case s.data != nil && s.dataIndex == index:
			out = append(out, l.withData(m, s.data, index))
		case l.capture == nil || l.capture.index != index:
			l.snapshotUnavailable(m, index)
		default:
			s.waiting = append(s.waiting, m)
		}
	}
	l.startSnapshotWrite()
	return out
}

// withData returns a copy of m carrying data and notes the send as in
// flight. m itself is left alone (its snapshot is raft's).
func (l *loop) withData(m *raftpb.Message, data []byte, index uint64) *raftpb.Message {
	snap := &raftpb.Snapshot{Data: data, Metadata: m.GetSnapshot().GetMetadata()}
	out := &raftpb.Message{Type: m.Type, To: m.To, From: m.From, Term: m.Term, Snapshot: snap}
	if l.sends.inflight == nil {
		l.sends.inflight = make(map[uint64]uint64)
	}
	l.sends.inflight[m.GetTo()] = index
	l.c.snapshotsSent.Add(1)
	return out
}

// snapshotUnavailable fails a snapshot send whose capture is gone; raft
// tries again later with the snapshot then in storage.
func (l *loop) snapshotUnavailable(m *raftpb.Message, index uint64) {
	l.log.Debug("snapshot capture gone; send failed", "to", fmt.Sprintf("%x", m.GetTo()), "index", index)
	l.n.in.pushSnapReport(m.GetTo(), raft.SnapshotFailure)
	if l.capture == nil || l.capture.index < l.snapIndex {
		l.snapshotNow = true
	}
}

// startSnapshotWrite hands the capture to the snapshot writer if sends wait
// for it and the writer is idle. Waiting sends for another index fail.
func (l *loop) startSnapshotWrite() {
	s := &l.sends
	if s.writing || len(s.waiting) == 0 {
		return
	}
	keep := s.waiting[:0]
	for _, m := range s.waiting {
		if index, _ := parseSnapToken(m.GetSnapshot().GetData()); l.capture != nil && index == l.capture.index {
			keep = append(keep, m)
		} else {
			l.snapshotUnavailable(m, index)
		}
	}
	clear(s.waiting[len(keep):])
	s.waiting = keep
	if len(keep) == 0 {
		return
	}
	s.writing = true
	l.n.snapInFlight.Store(true)
	c := l.capture
	l.snapJobc <- snapJob{index: c.index, dedup: c.dedup, removed: c.removed, w: c.w} // one job at a time: never blocks
}

// finishSnapshot sends the snapshots that waited for res and keeps the data
// for further sends of that index while these are in flight.
func (l *loop) finishSnapshot(res snapResult) {
	s := &l.sends
	s.writing = false
	l.n.snapInFlight.Store(false)
	defer l.startSnapshotWrite()
	var send, rest []*raftpb.Message
	for _, m := range s.waiting {
		if index, _ := parseSnapToken(m.GetSnapshot().GetData()); index == res.index {
			send = append(send, m)
		} else {
			rest = append(rest, m)
		}
	}
	s.waiting = rest
	if res.err != nil {
		l.log.Warn("writing snapshot failed", "index", res.index, "err", res.err)
		for _, m := range send {
			l.n.in.pushSnapReport(m.GetTo(), raft.SnapshotFailure)
		}
		return
	}
	l.c.snapshotsWritten.Add(1)
	if l.capture != nil && l.capture.index == res.index {
		s.keep(res.index, res.data, l.ticks, l.c)
	}
	for i := range send {
		send[i] = l.withData(send[i], res.data, res.index)
	}
	l.log.Info("sending snapshot", "index", res.index, "bytes", len(res.data), "to", len(send))
	if len(send) > 0 {
		l.tr.Send(send)
		l.c.messagesSent.Add(uint64(len(send)))
	}
}

// snapshotReported notes the outcome of a send to id; data nobody is
// sending any more is released.
func (l *loop) snapshotReported(id uint64) {
	s := &l.sends
	if _, ok := s.inflight[id]; !ok {
		return
	}
	delete(s.inflight, id)
	if len(s.inflight) == 0 {
		s.release(l.c)
	}
}

// expireSnapshotData releases shared data kept too long (a transport that
// never reported a send); called on ticks.
func (l *loop) expireSnapshotData() {
	if s := &l.sends; s.data != nil && l.ticks-s.dataTick >= snapDataKeepElections*uint64(l.cfg.ElectionTicks) {
		s.release(l.c)
	}
}

// dropStaleSnapshots filters out snapshot messages whose membership does not
// include their recipient. raft sends the snapshot held in storage, which
// predates members added since; the recipient would refuse it. Such a send is
// reported as failed (raft retries later) and a fresh snapshot, which
// includes the new member, is taken right away.
func (l *loop) dropStaleSnapshots(msgs []*raftpb.Message) []*raftpb.Message {
	stale := func(m *raftpb.Message) bool {
		if m.GetType() != raftpb.MsgSnap || m.GetSnapshot() == nil {
			return false
		}
		cs := m.GetSnapshot().GetMetadata().GetConfState()
		return !slices.Contains(cs.GetVoters(), m.GetTo()) && !slices.Contains(cs.GetLearners(), m.GetTo())
	}
	if !slices.ContainsFunc(msgs, stale) {
		return msgs
	}
	out := make([]*raftpb.Message, 0, len(msgs))
	for _, m := range msgs {
		if !stale(m) {
			out = append(out, m)
			continue
		}
		l.log.Debug("snapshot predates recipient; taking a fresh one", "to", fmt.Sprintf("%x", m.GetTo()),
			"index", m.GetSnapshot().GetMetadata().GetIndex())
		l.n.in.pushSnapReport(m.GetTo(), raft.SnapshotFailure)
		l.snapshotNow = true
	}
	return out
}
