package raftadapter

import (
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// bootstrapTerm is the term of a bootstrapped log's first position, as
// RawNode.Bootstrap uses.
const bootstrapTerm = 1

// bootstrapPosition is where a log bootstrapped from state starts: by
// default at index len(voters) (where RawNode.Bootstrap's configuration
// entries would end), term 1.
func bootstrapPosition(cfg Config, voters []uint64) (index, term uint64) {
	index, term = uint64(len(voters)), bootstrapTerm
	if cfg.BootstrapIndex != 0 {
		index = cfg.BootstrapIndex
	}
	if cfg.BootstrapTerm != 0 {
		term = cfg.BootstrapTerm
	}
	return index, term
}

// bootstrapStorage starts storage, before raft reads it, with the snapshot
// a cluster bootstrapped from state begins with: at the bootstrap position,
// with voters as the configuration and a token as data (the loop keeps the
// capture; see startFromState).
func bootstrapStorage(storage *raft.MemoryStorage, voters []uint64, index, term uint64) error {
	snap := &raftpb.Snapshot{
		Data: snapToken(index),
		Metadata: &raftpb.SnapshotMetadata{
			Index:     new(index),
			Term:      new(term),
			ConfState: &raftpb.ConfState{Voters: slices.Clone(voters)},
		},
	}
	if err := storage.ApplySnapshot(snap); err != nil {
		return fmt.Errorf("raftadapter: bootstrap from state: %w", err)
	}
	if err := storage.SetHardState(&raftpb.HardState{Term: new(term), Commit: new(index)}); err != nil {
		return fmt.Errorf("raftadapter: bootstrap from state: %w", err)
	}
	return nil
}

// startFromState makes the loop start where bootstrapStorage put the log:
// applied up to the snapshot, with a capture of the state machine (as it is
// now) standing for the snapshot's data, so the state goes to every member
// that joins. Called before the loop runs.
func (l *loop) startFromState(voters []uint64, index, term uint64, removed []uint64) error {
	l.dedup.startTerm(term)
	l.applied, l.appliedTerm = index, term
	l.snapIndex, l.lastSnapAttempt = index, index
	for _, id := range removed {
		l.removedIDs[id] = struct{}{}
	}
	l.publishRemoved()
	w, err := l.sm.Snapshot()
	if err != nil {
		return fmt.Errorf("raftadapter: bootstrap from state: capture the state machine: %w", err)
	}
	l.keepCapture(index, w)
	l.setConfState(&raftpb.ConfState{Voters: slices.Clone(voters)})
	if l.campaignAlone {
		// No Ready is pending, so the loop would wait for an election
		// timeout: the lone voter campaigns now (and wins at once).
		l.campaignAlone = false
		if err := l.rn.Campaign(); err != nil {
			l.log.Warn("lone voter could not campaign; it will after an election timeout", "err", err)
		}
	}
	l.log.Info("bootstrapped from the state machine's state", "index", index, "term", term, "voters", fmt.Sprintf("%x", voters))
	return nil
}
