package raftadapter

import (
	"bytes"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// applyEntries applies committed entries in order.
func (l *loop) applyEntries(ents []*raftpb.Entry) {
	for _, e := range ents {
		index, term := e.GetIndex(), e.GetTerm()
		if index <= l.applied {
			continue
		}
		if term > l.appliedTerm {
			l.appliedTerm = term
			l.dedup.startTerm(term)
			l.failOlderThan(term)
		}
		switch e.GetType() {
		case raftpb.EntryNormal:
			l.applyNormal(e)
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			l.applyConfEntry(e)
		}
		l.applied = index
		l.c.appliedEntries.Add(1)
	}
	l.maybeSnapshot()
}

func (l *loop) applyNormal(e *raftpb.Entry) {
	env, payload, ok := parseEnvelope(e.GetData())
	if !ok {
		if len(e.GetData()) > 0 {
			l.log.Warn("skipping log entry without envelope", "index", e.GetIndex())
		}
		return // raft's empty entry of a new leader
	}
	var w *waiter
	if env.proposer == l.id {
		w = l.waiters[env.seq]
	}
	if env.term != e.GetTerm() {
		// Appended in a term other than the one it was proposed in: a
		// forwarded proposal that reached a later leader. Every member skips
		// it, which is what lets a proposer declare its proposals lost once
		// it has applied an entry of a later term.
		if w != nil {
			l.lost(w, fmt.Errorf("%w: proposed in term %d, appended in term %d", ErrLeaderChanged, env.term, e.GetTerm()))
		}
		return
	}
	if !l.dedup.admit(env) {
		// A second copy (a re-proposal whose original was only slow), or a
		// late copy of a proposal its proposer had stopped waiting for.
		l.c.duplicatesSkipped.Add(1)
		if w != nil {
			// Cannot happen (a waited-for seq is never below a floor, and an
			// applied one has been resolved), but never leave a caller hanging.
			l.log.Error("skipped an entry whose proposal is still pending", "index", e.GetIndex(), "seq", env.seq)
			l.lost(w, fmt.Errorf("%w: entry %d skipped as a duplicate", ErrOutcomeUnknown, e.GetIndex()))
		}
		return
	}
	res := l.sm.Apply(e.GetIndex(), payload)
	if w != nil {
		l.resolve(w, result{val: res})
	}
}

// restore replaces the state machine and the dedup state with a snapshot
// from the leader.
func (l *loop) restore(snap *raftpb.Snapshot) {
	md := snap.GetMetadata()
	index, term := md.GetIndex(), md.GetTerm()
	dd, removed, smData, err := decodeSnapshot(snap.GetData())
	if err == nil && dd.term != term {
		err = fmt.Errorf("%w: dedup state of term %d in a snapshot of term %d", ErrBadSnapshot, dd.term, term)
	}
	if err != nil {
		l.fatal = fmt.Errorf("raftadapter: restoring snapshot at index %d: %w", index, err)
		return
	}
	if err := l.sm.Restore(bytes.NewReader(smData)); err != nil {
		l.fatal = fmt.Errorf("raftadapter: restoring snapshot at index %d: %w", index, err)
		return
	}
	l.dedup = dd
	l.removedIDs = removed
	l.publishRemoved()
	l.applied, l.appliedTerm = index, term
	l.snapIndex, l.lastSnapAttempt = index, index
	l.captureRestored(index)
	l.c.snapshotsRestored.Add(1)
	l.log.Info("restored snapshot from leader", "index", index, "term", term, "bytes", len(snap.GetData()))
	// A proposal of a term up to the snapshot's may be inside the snapshot
	// or lost; we cannot tell. Later terms come after it and still resolve.
	for _, w := range l.waiters {
		if w.term <= term {
			l.lost(w, fmt.Errorf("%w: log replaced by snapshot at index %d", ErrOutcomeUnknown, index))
		} else if w.conf != nil {
			// The log after the snapshot is gone too; entries come again.
			// (A proposal seen in the log of its own term needs no
			// re-proposal still: that term's leader has it.)
			w.conf.seenIndex = 0
		}
	}
	l.setConfState(md.GetConfState())
}

// setConfState records a new membership and notices this member's removal.
func (l *loop) setConfState(cs *raftpb.ConfState) {
	if cs == nil {
		cs = new(raftpb.ConfState)
	}
	l.confState = proto.CloneOf(cs)
	l.voters = slices.Sorted(slices.Values(cs.GetVoters()))
	l.learners = slices.Sorted(slices.Values(cs.GetLearners()))
	l.votersOutgoing = slices.Sorted(slices.Values(cs.GetVotersOutgoing()))
	l.memberVer++
	_, member := confMembers(cs)[l.id]
	switch {
	case member:
		l.wasMember = true
	case l.wasMember && !l.removed:
		l.removed = true
		l.log.Info("this member was removed from the cluster")
		l.failAllForRemoval()
	}
}

func (l *loop) failAllForRemoval() {
	for _, w := range l.waiters {
		l.resolve(w, result{err: ErrRemoved})
	}
	for _, c := range l.confQueue {
		l.out.results = append(l.out.results, pendingResult{c.w, result{err: ErrRemoved}})
	}
	l.confQueue = nil
	l.failAllReads(ErrRemoved)
	for _, t := range l.transfers {
		l.out.transfers = append(l.out.transfers, pendingTransfer{t, ErrRemoved})
	}
	l.transfers = nil
}
