package meshtransport

import (
	"hash/crc32"
	"time"

	"github.com/meshkv/meshkv/internal/peerlink"
)

// Large messages (every MsgSnap, and anything over ChunkSize) travel as
// transfers: the sender marshals the message once and sends it in
// ChunkSize chunks, each its own frame, at most chunkWindow beyond what the
// receiver acknowledged. The receiver takes chunks in order only, and
// acknowledges each one with the number of chunks it holds; when the last
// one is in and the payload's checksum matches, it delivers the message and
// says so. A gap (a chunk lost on a path that died) is repaired by going
// back to the first chunk not acknowledged: after dupAcksForResend
// acknowledgements that do not advance, or after resendAfter without
// progress. A transfer with no progress for Config.SnapshotTimeout fails,
// and raft hears that the snapshot failed.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	chunkWindow      = 8 // chunks in flight beyond the acknowledged ones (4 MiB)
	dupAcksForResend = 3
	resendAfter      = time.Second
)

// outTransfer is the sender side of one transfer. It is pure bookkeeping,
// owned by the destination's sender goroutine.
type outTransfer struct {
	id     uint64
	raftTo uint64
	snap   bool // a MsgSnap: raft wants ReportSnapshot
	data   []byte
	count  uint32
	sum    uint32

	next       uint32 // next chunk to send
	acked      uint32 // chunks the receiver holds in order
	dupAcks    int
	recovering bool      // went back; until acked advances
	progressAt time.Time // start, or the last ack that advanced
	sentAt     time.Time // when a chunk was last sent
}

func newOutTransfer(id, raftTo uint64, snap bool, data []byte, now time.Time) *outTransfer {
	return &outTransfer{
		id: id, raftTo: raftTo, snap: snap, data: data,
		count:      uint32((uint64(len(data)) + ChunkSize - 1) / ChunkSize),
		sum:        crc32.Checksum(data, castagnoli),
		progressAt: now,
	}
}

// chunk returns the header and data of chunk i.
func (o *outTransfer) chunk(i uint32) (chunkHeader, []byte) {
	start := uint64(i) * ChunkSize
	end := start + chunkLen(uint64(len(o.data)), i)
	return chunkHeader{index: i, count: o.count, total: uint64(len(o.data)), sum: o.sum}, o.data[start:end]
}

// due returns the next chunk to send, if the window allows one.
func (o *outTransfer) due(now time.Time) (uint32, bool) {
	if o.next >= o.count || o.next >= o.acked+chunkWindow {
		return 0, false
	}
	i := o.next
	o.next++
	o.sentAt = now
	return i, true
}

// transferOutcome is what an acknowledgement or a tick did to a transfer.
type transferOutcome uint8

const (
	transferPending transferOutcome = iota
	transferDone                    // the receiver delivered the message
	transferFailed                  // rejected by the receiver, or timed out
)

// onAck applies an acknowledgement.
func (o *outTransfer) onAck(a chunkAck, now time.Time) transferOutcome {
	switch a.status {
	case ackDone:
		return transferDone
	case ackRejected:
		return transferFailed
	}
	if a.next > o.count {
		return transferPending // nonsense; ignore
	}
	if a.next > o.acked {
		o.acked, o.dupAcks, o.recovering = a.next, 0, false
		o.progressAt = now
		if o.next < o.acked {
			o.next = o.acked
		}
		return transferPending
	}
	o.dupAcks++
	if o.dupAcks >= dupAcksForResend && !o.recovering && o.next > o.acked {
		o.next, o.recovering = o.acked, true
	}
	return transferPending
}

// tick fails the transfer after timeout without progress, and goes back to
// the first unacknowledged chunk after resendAfter without progress.
func (o *outTransfer) tick(now time.Time, timeout time.Duration) transferOutcome {
	if now.Sub(o.progressAt) > timeout {
		return transferFailed
	}
	if o.next > o.acked && now.Sub(o.lastActivity()) > resendAfter {
		o.next, o.recovering = o.acked, true
	}
	return transferPending
}

// lastActivity is the later of the last progress and the last send.
func (o *outTransfer) lastActivity() time.Time {
	if o.sentAt.After(o.progressAt) {
		return o.sentAt
	}
	return o.progressAt
}

// deadline is when tick next has something to do.
func (o *outTransfer) deadline(timeout time.Duration) time.Time {
	d := o.progressAt.Add(timeout)
	if o.next > o.acked {
		if r := o.lastActivity().Add(resendAfter); r.Before(d) {
			d = r
		}
	}
	return d
}

// inTransfer is a transfer being received.
type inTransfer struct {
	id     uint64
	count  uint32
	total  uint64
	sum    uint32
	chunks [][]byte // the first next chunks, in order
	held   int64
	last   time.Time
}

type doneTransfer struct {
	id uint64
	ok bool
}

// reassembler is the receiver side, keyed by the authenticated origin: at
// most one transfer per origin (a newer one replaces an older one), and at
// most limit bytes held over all origins. Chunks are taken in order only,
// so an origin holds no more than it actually sent. It is owned by the
// inbound goroutine.
type reassembler struct {
	timeout time.Duration
	limit   int64
	held    int64
	m       map[peerlink.PublicKey]*inTransfer
	done    map[peerlink.PublicKey]doneTransfer
}

func newReassembler(timeout time.Duration, limit int64) *reassembler {
	return &reassembler{
		timeout: timeout,
		limit:   limit,
		m:       make(map[peerlink.PublicKey]*inTransfer),
		done:    make(map[peerlink.PublicKey]doneTransfer),
	}
}

// addResult is what add asks the caller to do.
type addResult struct {
	payload []byte   // a complete, verified message to deliver
	ack     chunkAck // to send back to the origin
	send    bool     // whether to send ack
	refused bool     // the chunk was refused (memory bound or inconsistent)
}

// add takes one decoded chunk of transfer id from origin. data is kept,
// not copied.
func (r *reassembler) add(origin peerlink.PublicKey, id uint64, ch chunkHeader, data []byte, now time.Time) addResult {
	if d, ok := r.done[origin]; ok {
		switch {
		case d.id == id && d.ok:
			return addResult{ack: chunkAck{status: ackDone, next: ch.count}, send: true}
		case d.id == id:
			return addResult{ack: chunkAck{status: ackRejected}, send: true}
		case id < d.id:
			return addResult{} // a late chunk of an older transfer
		}
	}
	cur := r.m[origin]
	if cur != nil && id < cur.id {
		return addResult{}
	}
	if cur == nil || id > cur.id {
		if cur != nil {
			r.drop(origin)
		}
		if ch.index != 0 {
			// The start was lost; the sender goes back to it.
			return addResult{ack: chunkAck{status: ackProgress, next: 0}, send: true}
		}
		cur = &inTransfer{id: id, count: ch.count, total: ch.total, sum: ch.sum, chunks: make([][]byte, 0, min(ch.count, 64))}
		r.m[origin] = cur
	}
	if ch.count != cur.count || ch.total != cur.total || ch.sum != cur.sum {
		r.finish(origin, id, false)
		return addResult{ack: chunkAck{status: ackRejected}, send: true, refused: true}
	}
	cur.last = now
	next := uint32(len(cur.chunks))
	if ch.index != next {
		// A duplicate, or a gap after a lost chunk: say where we are.
		return addResult{ack: chunkAck{status: ackProgress, next: next}, send: true}
	}
	if r.held+int64(len(data)) > r.limit {
		r.finish(origin, id, false)
		return addResult{ack: chunkAck{status: ackRejected}, send: true, refused: true}
	}
	cur.chunks = append(cur.chunks, data)
	cur.held += int64(len(data))
	r.held += int64(len(data))
	if uint32(len(cur.chunks)) < cur.count {
		return addResult{ack: chunkAck{status: ackProgress, next: uint32(len(cur.chunks))}, send: true}
	}
	payload := make([]byte, 0, cur.total)
	for _, c := range cur.chunks {
		payload = append(payload, c...)
	}
	ok := crc32.Checksum(payload, castagnoli) == cur.sum
	r.finish(origin, id, ok)
	if !ok {
		return addResult{ack: chunkAck{status: ackRejected}, send: true, refused: true}
	}
	return addResult{payload: payload, ack: chunkAck{status: ackDone, next: cur.count}, send: true}
}

// finish ends origin's transfer id and remembers how.
func (r *reassembler) finish(origin peerlink.PublicKey, id uint64, ok bool) {
	r.drop(origin)
	r.done[origin] = doneTransfer{id: id, ok: ok}
}

func (r *reassembler) drop(origin peerlink.PublicKey) {
	if cur, ok := r.m[origin]; ok {
		r.held -= cur.held
		delete(r.m, origin)
	}
}

// forget drops everything about origin (it is gone).
func (r *reassembler) forget(origin peerlink.PublicKey) {
	r.drop(origin)
	delete(r.done, origin)
}

// expire drops transfers idle for longer than the timeout and returns how
// many it dropped.
func (r *reassembler) expire(now time.Time) int {
	n := 0
	for o, cur := range r.m {
		if now.Sub(cur.last) > r.timeout {
			r.drop(o)
			n++
		}
	}
	return n
}
