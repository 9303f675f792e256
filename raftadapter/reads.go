package raftadapter

import (
	"bytes"
	"context"
	"encoding/binary"

	"go.etcd.io/raft/v3"
)

// readRequest is one ReadIndex call.
type readRequest struct {
	ctx  context.Context
	done chan error // capacity 1
}

// readRound is one raft read-index round shared by a batch of reads.
type readRound struct {
	rctx      []byte // request context raft echoes back: node id + round number
	reads     []*readRequest
	startTick uint64
	index     uint64 // read index confirmed by the leader's quorum
}

// readQueue batches ReadIndex calls. Reads that arrive while a round is in
// flight wait in pending and all share the next round; a confirmed round is
// answered once the applied index reaches its read index.
type readQueue struct {
	pending   []*readRequest
	inflight  *readRound
	confirmed []*readRound
	rounds    uint64
}

// addReads queues first and any reads already waiting behind it.
func (l *loop) addReads(first *readRequest) {
	batch := []*readRequest{first}
drain:
	for {
		select {
		case r := <-l.n.readc:
			batch = append(batch, r)
		default:
			break drain
		}
	}
	l.c.readRequests.Add(uint64(len(batch)))
	var err error
	switch {
	case l.closing:
		err = ErrStopped
	case l.removed:
		err = ErrRemoved
	}
	if err != nil {
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	l.reads.pending = append(l.reads.pending, batch...)
	l.c.pendingReads.Add(int64(len(batch)))
}

// startReadRound starts a round for the pending reads if none is in flight
// and a leader is known (raft drops read requests while there is none).
func (l *loop) startReadRound() bool {
	q := &l.reads
	if q.inflight != nil || len(q.pending) == 0 || l.lead == 0 || l.removed || l.closing {
		return false
	}
	l.dropAbandonedReads()
	live := q.pending
	if len(live) == 0 {
		return false
	}
	// Every round, a retry included, gets a context of its own. raft may
	// still answer an abandoned attempt (its acknowledgements can arrive
	// late, from a leader since deposed); that answer must never be taken
	// for a later round, whose reads may have started after writes the
	// earlier read index does not cover.
	q.rounds++
	rctx := make([]byte, 16)
	binary.BigEndian.PutUint64(rctx[:8], l.id)
	binary.BigEndian.PutUint64(rctx[8:], q.rounds)
	q.inflight = &readRound{rctx: rctx, reads: live, startTick: l.ticks}
	q.pending = nil
	l.c.readRounds.Add(1)
	l.rn.ReadIndex(rctx)
	return true
}

// dropAbandonedReads forgets pending reads whose callers already returned
// (also while no leader is known, so they do not pile up).
func (l *loop) dropAbandonedReads() {
	q := &l.reads
	live := q.pending[:0]
	for _, r := range q.pending {
		if r.ctx.Err() != nil {
			l.c.pendingReads.Add(-1)
			continue
		}
		live = append(live, r)
	}
	clear(q.pending[len(live):])
	q.pending = live
}

// readStateArrived records the read index raft confirmed for a round.
func (l *loop) readStateArrived(rs raft.ReadState) {
	r := l.reads.inflight
	if r == nil || !bytes.Equal(rs.RequestCtx, r.rctx) {
		return // an abandoned round; its reads moved to a later one
	}
	r.index = rs.Index
	l.reads.confirmed = append(l.reads.confirmed, r)
	l.reads.inflight = nil
}

// completeReads answers confirmed rounds whose read index has been applied.
func (l *loop) completeReads() {
	q := &l.reads
	keep := q.confirmed[:0]
	for _, r := range q.confirmed {
		if r.index > l.applied {
			keep = append(keep, r)
			continue
		}
		for _, req := range r.reads {
			l.out.reads = append(l.out.reads, pendingRead{req, nil})
		}
		l.c.pendingReads.Add(-int64(len(r.reads)))
	}
	clear(q.confirmed[len(keep):])
	q.confirmed = keep
}

// abandonReadRound gives up on the round in flight (leader changed, or no
// answer within an election timeout); its reads join the next round.
func (l *loop) abandonReadRound() {
	q := &l.reads
	if q.inflight == nil {
		return
	}
	q.pending = append(q.inflight.reads, q.pending...)
	q.inflight = nil
}

func (l *loop) failAllReads(err error) {
	q := &l.reads
	var n int64
	fail := func(rs []*readRequest) {
		for _, r := range rs {
			l.out.reads = append(l.out.reads, pendingRead{r, err})
		}
		n += int64(len(rs))
	}
	fail(q.pending)
	if q.inflight != nil {
		fail(q.inflight.reads)
	}
	for _, r := range q.confirmed {
		fail(r.reads)
	}
	q.pending, q.inflight, q.confirmed = nil, nil, nil
	l.c.pendingReads.Add(-n)
}
