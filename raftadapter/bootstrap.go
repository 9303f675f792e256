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

// bootstrapStorage starts storage, before raft reads it, with the snapshot
// a cluster bootstrapped from state begins with: at index len(voters)
// (where RawNode.Bootstrap's configuration entries would end), term 1, with
// voters as the configuration and a token as data (the loop keeps the
// capture; see startFromState).
func bootstrapStorage(storage *raft.MemoryStorage, voters []uint64) error {
	index := uint64(len(voters))
	snap := &raftpb.Snapshot{
		Data: snapToken(index),
		Metadata: &raftpb.SnapshotMetadata{
			Index:     new(index),
			Term:      new(uint64(bootstrapTerm)),
			ConfState: &raftpb.ConfState{Voters: slices.Clone(voters)},
		},
	}
	if err := storage.ApplySnapshot(snap); err != nil {
		return fmt.Errorf("raftadapter: bootstrap from state: %w", err)
	}
	if err := storage.SetHardState(&raftpb.HardState{Term: new(uint64(bootstrapTerm)), Commit: new(index)}); err != nil {
		return fmt.Errorf("raftadapter: bootstrap from state: %w", err)
	}
	return nil
}

// startFromState makes the loop start where bootstrapStorage put the log:
// applied up to the snapshot, with a capture of the state machine (as it is
// now) standing for the snapshot's data, so the state goes to every member
// that joins. Called before the loop runs.
func (l *loop) startFromState(voters []uint64) error {
	index := uint64(len(voters))
	l.dedup.startTerm(bootstrapTerm)
	l.applied, l.appliedTerm = index, bootstrapTerm
	l.snapIndex, l.lastSnapAttempt = index, index
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
	l.log.Info("bootstrapped from the state machine's state", "index", index, "voters", fmt.Sprintf("%x", voters))
	return nil
}
