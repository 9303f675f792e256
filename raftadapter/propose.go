package raftadapter

import (
	"errors"
	"fmt"
	"runtime"

	"go.etcd.io/raft/v3"
)

// proposeBatch steps first and every proposal already queued behind it into
// raft as one message, so concurrent proposals share a Ready.
func (l *loop) proposeBatch(first proposal) {
	batch := append(l.propBuf[:0], first)
	size := len(first.buf)
	if len(l.n.propc) < maxProposalBatch/2 {
		// Proposers woken by the previous turn's replies are usually about to
		// propose again; let them, so they share this step.
		runtime.Gosched()
	}
drain:
	for len(batch) < maxProposalBatch && uint64(size) < l.cfg.MaxSizePerMsg {
		select {
		case p := <-l.n.propc:
			batch = append(batch, p)
			size += len(p.buf)
		default:
			break drain
		}
	}
	defer func() {
		clear(batch)
		l.propBuf = batch[:0]
	}()

	// Callers that gave up before we got here are not proposed at all.
	live := batch[:0]
	for _, p := range batch {
		if p.ctx.Err() == nil {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return
	}
	fail := func(err error) {
		for _, p := range live {
			p.w.done <- result{err: err}
		}
	}
	if l.closing {
		fail(ErrStopped)
		return
	}
	if l.removed {
		fail(ErrRemoved)
		return
	}
	bs := l.rn.BasicStatus()
	if bs.Lead == 0 {
		l.c.proposalsDropped.Add(uint64(len(live)))
		fail(ErrNoLeader)
		return
	}
	for _, p := range live {
		p.w.seq = l.nextSeq()
	}
	low := l.lowWater(live[0].w.seq)
	ents := normalEntries(len(live))
	for i, p := range live {
		envelope{proposer: l.id, term: bs.GetTerm(), seq: p.w.seq, low: low}.stamp(p.buf)
		ents[i].Data = p.buf
	}
	if err := l.rn.Step(l.propMsg(ents)); err != nil {
		l.c.proposalsDropped.Add(uint64(len(live)))
		fail(l.dropError(err))
		return
	}
	// A leader has appended them; a follower forwarded them and may have to
	// propose them again if they do not show up (see repropose).
	leader := bs.RaftState == raft.StateLeader
	for _, p := range live {
		p.w.term, p.w.proposedTick = bs.GetTerm(), l.ticks
		if !leader {
			p.w.buf = p.buf
		}
		l.waiters[p.w.seq] = p.w
	}
	if !leader {
		l.scheduleRepropose(l.ticks + uint64(l.cfg.ReproposeTicks))
	}
	l.c.proposals.Add(uint64(len(live)))
	l.c.proposalBatches.Add(1)
	l.c.pendingProposals.Add(int64(len(live)))
}

// dropError explains why raft refused a proposal.
func (l *loop) dropError(err error) error {
	if !errors.Is(err, raft.ErrProposalDropped) {
		return fmt.Errorf("raftadapter: proposal refused: %w", err)
	}
	bs := l.rn.BasicStatus()
	switch {
	case l.removed:
		return ErrRemoved
	case bs.Lead == 0:
		return ErrNoLeader
	case bs.LeadTransferee != 0:
		return fmt.Errorf("%w: leadership transfer to %x in progress", ErrLeaderChanged, bs.LeadTransferee)
	default:
		return fmt.Errorf("%w: proposal dropped by raft", ErrNoLeader)
	}
}

// failOlderThan fails every waiter proposed before term: this node is about
// to apply an entry of term, and an entry proposed in an earlier term can no
// longer be applied (it would have come before, or will be skipped).
func (l *loop) failOlderThan(term uint64) {
	for _, w := range l.waiters {
		if w.term < term {
			l.lost(w, fmt.Errorf("%w: proposed in term %d, not committed before term %d", ErrLeaderChanged, w.term, term))
		}
	}
}

// resolve hands r to w's caller and forgets w.
func (l *loop) resolve(w *waiter, r result) {
	if l.waiters[w.seq] != w {
		return
	}
	delete(l.waiters, w.seq)
	l.c.pendingProposals.Add(-1)
	l.out.results = append(l.out.results, pendingResult{w, r})
	if w.conf != nil {
		l.confDone(w.conf)
	}
}

func (l *loop) lost(w *waiter, err error) {
	l.c.proposalsLost.Add(1)
	l.resolve(w, result{err: err})
}

// forget drops the waiter of a caller whose context ended (if the loop
// still has it: it may not have been proposed yet, or already be resolved).
func (l *loop) forget(w *waiter) {
	if w.seq == 0 || l.waiters[w.seq] != w {
		return
	}
	l.resolve(w, result{err: errors.New("raftadapter: caller gone")})
}

// outbox holds replies produced during a loop turn. They are handed to the
// callers after the turn's Status is published, so a caller that got its
// result sees a Status at least that fresh (e.g. the applied membership
// after AddLearner returns). Reply channels have capacity one and get one
// value each, so flushing never blocks.
type outbox struct {
	results   []pendingResult
	reads     []pendingRead
	transfers []pendingTransfer
}

type pendingResult struct {
	w *waiter
	r result
}

type pendingRead struct {
	r   *readRequest
	err error
}

type pendingTransfer struct {
	t   *transferRequest
	err error
}

func (o *outbox) flush() {
	for _, p := range o.results {
		p.w.done <- p.r
	}
	for _, p := range o.reads {
		p.r.done <- p.err
	}
	for _, p := range o.transfers {
		p.t.done <- p.err
	}
	clear(o.results)
	clear(o.reads)
	clear(o.transfers)
	o.results, o.reads, o.transfers = o.results[:0], o.reads[:0], o.transfers[:0]
}
