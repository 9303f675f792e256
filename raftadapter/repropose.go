package raftadapter

import (
	"cmp"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// maxReproposeBatch bounds the proposals stepped again in one round; the
// rest follow at the next tick.
const maxReproposeBatch = maxProposalBatch

// nextSeq hands out the next sequence number. Only the loop assigns them, in
// increasing order, which is what makes low watermarks sound (see dedup).
func (l *loop) nextSeq() uint64 {
	l.lastSeq++
	return l.lastSeq
}

// lowWater returns the smallest seq of a pending proposal, or limit if none
// is smaller. limit is the first seq of a batch about to be stamped, whose
// waiters are not registered yet. lowSeq only moves up, so the scan costs one
// map lookup per seq over the node's lifetime. Membership changes do not
// count: their envelopes are never deduplicated.
func (l *loop) lowWater(limit uint64) uint64 {
	for l.lowSeq < limit {
		if w := l.waiters[l.lowSeq]; w != nil && w.conf == nil {
			break
		}
		l.lowSeq++
	}
	return l.lowSeq
}

// scheduleRepropose makes the tick handler look at pending proposals at tick
// at, or earlier if already scheduled earlier.
func (l *loop) scheduleRepropose(at uint64) {
	if l.reproposeAt == 0 || at < l.reproposeAt {
		l.reproposeAt = at
	}
}

// noteProposalsAppended drops the envelope kept for re-proposal of pending
// proposals whose entry reached the local log in the term they were proposed
// in. Such an entry is also in the log of that term's leader (raft's log
// matching), so it commits unless the leader changes, and then the term rule
// fails the proposal anyway: proposing it again would only add a copy to
// skip. A leader keeps no envelopes.
func (l *loop) noteProposalsAppended(ents []*raftpb.Entry) {
	if len(l.waiters) == 0 || l.state == raft.StateLeader {
		return
	}
	for _, e := range ents {
		if e.GetType() != raftpb.EntryNormal {
			continue
		}
		env, _, ok := parseEnvelope(e.GetData())
		if !ok || env.proposer != l.id || env.term != e.GetTerm() {
			continue
		}
		if w := l.waiters[env.seq]; w != nil && w.conf == nil {
			w.buf = nil
		}
	}
}

// repropose steps again, as one batch, the pending proposals that a
// follower forwarded at least ReproposeTicks ago and has not seen in its log:
// the forwarded message may have been lost (raft never retransmits
// proposals). It re-sends the stamped envelope byte for byte, so if the
// original was merely slow the log gets two copies of the same (proposer,
// seq), and every member applies only the first (see dedup).
//
// Only proposals of the current term are sent, only while this node follows
// a known leader: copies appended in another term are skipped anyway, and a
// leader's own proposals are already in its log.
func (l *loop) repropose() {
	l.reproposeAt = 0
	every := uint64(l.cfg.ReproposeTicks)
	term := l.rn.BasicStatus().GetTerm()
	canSend := !l.closing && !l.removed && l.state == raft.StateFollower && l.lead != 0 && l.lead != l.id
	var due []*waiter
	for _, w := range l.waiters {
		if w.buf == nil || w.term != term || l.state == raft.StateLeader {
			continue // no re-proposal can help it, now or later
		}
		switch {
		case !canSend:
			l.scheduleRepropose(l.ticks + 1) // no leader known right now; look again
		case w.proposedTick+every > l.ticks:
			l.scheduleRepropose(w.proposedTick + every)
		default:
			due = append(due, w)
		}
	}
	if len(due) == 0 {
		return
	}
	slices.SortFunc(due, func(a, b *waiter) int { return cmp.Compare(a.seq, b.seq) })
	count, size := 0, uint64(0)
	for _, w := range due {
		if count == maxReproposeBatch || (count > 0 && size+uint64(len(w.buf)) > l.cfg.MaxSizePerMsg) {
			l.scheduleRepropose(l.ticks + 1) // the rest go next tick
			break
		}
		count++
		size += uint64(len(w.buf))
	}
	ents := normalEntries(count)
	for i, w := range due[:count] {
		ents[i].Data = w.buf
	}
	if err := l.rn.Step(l.propMsg(ents)); err != nil {
		// Leader lost meanwhile; the proposals stay pending.
		l.scheduleRepropose(l.ticks + 1)
		return
	}
	for _, w := range due[:len(ents)] {
		w.proposedTick = l.ticks
	}
	l.scheduleRepropose(l.ticks + every)
	l.c.reproposed.Add(uint64(len(ents)))
	l.log.Debug("re-proposed pending proposals", "count", len(ents), "leader", fmt.Sprintf("%x", l.lead), "term", term)
}
