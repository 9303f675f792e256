package meshtransport

import (
	"hash/crc32"
	"sync"
	"time"

	"github.com/weaveworks/mesh"
)

// Large messages travel as transfers: the sender marshals the message once,
// cuts it into ChunkSize chunks (each its own unicast, checksummed and
// numbered), and waits for one acknowledgement from the receiver, which
// reassembles, verifies and delivers the message before acknowledging.

// outTransfer is a chunked send waiting for its acknowledgement.
type outTransfer struct {
	dst      mesh.PeerName
	raftTo   uint64
	snap     bool      // a MsgSnap: raft wants ReportSnapshot
	deadline time.Time // zero while chunks are still being written
}

// transferResult is the outcome of a transfer, reported to the handler.
type transferResult struct {
	raftTo uint64
	snap   bool
	ok     bool
}

// outTransfers tracks the sender side. Link goroutines add and finish
// transfers, the inbound goroutine applies acks, the monitor expires them.
type outTransfers struct {
	mu sync.Mutex
	m  map[uint64]*outTransfer // by transfer id
}

func newOutTransfers() *outTransfers {
	return &outTransfers{m: make(map[uint64]*outTransfer)}
}

func (o *outTransfers) start(id uint64, tr *outTransfer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.m[id] = tr
}

// written starts the acknowledgement deadline once the last chunk is out. It
// reports false when the transfer already ended (acked or failed).
func (o *outTransfers) written(id uint64, deadline time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	tr, ok := o.m[id]
	if ok {
		tr.deadline = deadline
	}
	return ok
}

// finish removes a transfer, returning its result; ok says whether it was
// still pending (a duplicate ack or a late failure finds nothing).
func (o *outTransfers) finish(id uint64, from mesh.PeerName, success bool) (transferResult, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	tr, ok := o.m[id]
	if !ok || (from != mesh.UnknownPeerName && tr.dst != from) {
		return transferResult{}, false
	}
	delete(o.m, id)
	return transferResult{raftTo: tr.raftTo, snap: tr.snap, ok: success}, true
}

// expire fails every transfer whose deadline passed, and every transfer to a
// peer in gone.
func (o *outTransfers) expire(now time.Time, gone map[mesh.PeerName]bool) []transferResult {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []transferResult
	for id, tr := range o.m {
		if gone[tr.dst] || (!tr.deadline.IsZero() && now.After(tr.deadline)) {
			delete(o.m, id)
			out = append(out, transferResult{raftTo: tr.raftTo, snap: tr.snap})
		}
	}
	return out
}

func (o *outTransfers) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.m)
}

// transferKey names an inbound transfer: ids are unique per sending peer.
type transferKey struct {
	origin mesh.PeerName
	id     uint64
}

// partial is an inbound transfer still missing chunks.
type partial struct {
	count  uint32
	total  uint64
	sum    uint32
	chunks [][]byte // sub-slices of received frames, nil until received
	got    uint32
	held   int64
	last   time.Time
}

// addOutcome says what an inbound chunk did.
type addOutcome uint8

const (
	addPending   addOutcome = iota // stored (or a duplicate of a stored chunk); more to come
	addComplete                    // the payload is complete and verified
	addDuplicate                   // belongs to a transfer already completed: acknowledge again
	addRejected                    // inconsistent, corrupt or over the memory bound: negative ack
)

// maxPartialsPerOrigin bounds concurrent inbound transfers from one peer; raft
// sends one snapshot per follower at a time, so an extra one means the older
// is abandoned.
const maxPartialsPerOrigin = 2

// maxDoneRemembered bounds the set of completed transfers kept to answer
// duplicates.
const maxDoneRemembered = 256

// reassembler is the receiver side. It is owned by the inbound goroutine.
type reassembler struct {
	timeout time.Duration
	limit   int64 // bytes held by all partials together
	held    int64
	partial map[transferKey]*partial
	done    map[transferKey]doneTransfer
}

// doneTransfer remembers how a completed transfer ended, to answer
// duplicates the same way.
type doneTransfer struct {
	at time.Time
	ok bool
}

func newReassembler(timeout time.Duration, limit int64) *reassembler {
	return &reassembler{
		timeout: timeout,
		limit:   limit,
		partial: make(map[transferKey]*partial),
		done:    make(map[transferKey]doneTransfer),
	}
}

// add stores one verified chunk (see decodeChunk) and returns the whole
// payload once every chunk is in and the payload checksum matches. data must
// stay unmodified (it is kept, not copied).
func (r *reassembler) add(key transferKey, ch chunkHeader, data []byte, now time.Time) ([]byte, addOutcome) {
	if d, ok := r.done[key]; ok {
		if d.ok {
			return nil, addDuplicate
		}
		return nil, addRejected
	}
	p, ok := r.partial[key]
	if !ok {
		r.evictFor(key.origin)
		p = &partial{count: ch.count, total: ch.total, sum: ch.sum, chunks: make([][]byte, ch.count)}
		r.partial[key] = p
	}
	if ch.count != p.count || ch.total != p.total || ch.sum != p.sum {
		r.drop(key)
		r.remember(key, now, false)
		return nil, addRejected
	}
	p.last = now
	if p.chunks[ch.index] != nil {
		return nil, addPending
	}
	if r.held+int64(len(data)) > r.limit {
		r.drop(key)
		r.remember(key, now, false)
		return nil, addRejected
	}
	p.chunks[ch.index] = data
	p.got++
	p.held += int64(len(data))
	r.held += int64(len(data))
	if p.got < p.count {
		return nil, addPending
	}
	payload := make([]byte, 0, p.total)
	for _, c := range p.chunks {
		payload = append(payload, c...)
	}
	r.drop(key)
	ok = crc32.Checksum(payload, castagnoli) == p.sum
	r.remember(key, now, ok)
	if !ok {
		return nil, addRejected
	}
	return payload, addComplete
}

// evictFor makes room for a new transfer from origin by dropping its oldest
// (lowest id) partials.
func (r *reassembler) evictFor(origin mesh.PeerName) {
	for {
		n := 0
		var oldest transferKey
		for k := range r.partial {
			if k.origin == origin {
				if n == 0 || k.id < oldest.id {
					oldest = k
				}
				n++
			}
		}
		if n < maxPartialsPerOrigin {
			return
		}
		r.drop(oldest)
	}
}

func (r *reassembler) drop(key transferKey) {
	if p, ok := r.partial[key]; ok {
		r.held -= p.held
		delete(r.partial, key)
	}
}

func (r *reassembler) remember(key transferKey, now time.Time, ok bool) {
	if len(r.done) >= maxDoneRemembered {
		var oldest transferKey
		var at time.Time
		first := true
		for k, d := range r.done {
			if first || d.at.Before(at) {
				oldest, at, first = k, d.at, false
			}
		}
		delete(r.done, oldest)
	}
	r.done[key] = doneTransfer{at: now, ok: ok}
}

// expire drops partials idle for longer than the timeout and forgets
// completed transfers after the same time. It returns how many partials were
// dropped.
func (r *reassembler) expire(now time.Time) int {
	n := 0
	for k, p := range r.partial {
		if now.Sub(p.last) > r.timeout {
			r.drop(k)
			n++
		}
	}
	for k, d := range r.done {
		if now.Sub(d.at) > r.timeout {
			delete(r.done, k)
		}
	}
	return n
}
