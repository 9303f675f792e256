// Package raftadapter turns a raft RawNode (go.etcd.io/raft/v3) into a
// replicated log for a StateMachine: proposals with results, linearizable
// read barriers, snapshots with log compaction, membership changes and
// leadership transfer. It does no I/O of its own: raft messages leave through
// a Transport and arrive through Node.Step, and raft state lives in a
// raft.MemoryStorage (meshkv's state is in memory by design; a restarted
// process joins as a new member with a new id).
//
// # Contract
//
//   - Propose returns the state machine's Apply result once the entry is
//     applied on the node that was called, wherever the leader is (raft
//     forwards proposals). Each payload travels in an envelope carrying the
//     proposer's raft id, a per-node sequence number, the proposer's term
//     and the smallest sequence number the proposer still waits for; only
//     the proposer's waiter is woken, and entries whose id nobody waits for
//     are still applied (once; see below).
//   - A proposal is applied only if raft appended it in the term it was
//     proposed in; all members skip it otherwise. Hence, once a member
//     applies an entry of a later term, its older pending proposals can never
//     be applied and fail at once with ErrLeaderChanged (safe to retry). A
//     proposal raft drops up front fails with ErrNoLeader. Only a context
//     deadline (ErrTimeout), a snapshot replacing the log (ErrOutcomeUnknown)
//     or Close (ErrStopped) leave the outcome open. Success is reported only
//     for an entry this node has applied. Replies are handed over after the
//     loop has published its Status, so Status().AppliedIndex already covers
//     an entry whose Propose returned.
//   - raft forwards a follower's proposal once and never retransmits it. A
//     follower therefore proposes again, in one bounded batch, every pending
//     proposal of the current term that has not reached its own log within
//     Config.ReproposeTicks (default: three heartbeats), as long as it
//     follows a known leader. The copy is the same envelope byte for byte.
//     A leader never re-proposes: what raft accepted is in its log. So a
//     proposal whose message was lost while the cluster stays in one term
//     succeeds a few heartbeats later instead of at the caller's deadline.
//   - Every proposal is applied at most once. When the original was only
//     slow, the log holds two copies; all members apply the first and skip
//     the others (Metrics.DuplicatesSkipped), deciding from the log alone:
//     per proposer they keep the sequence numbers applied in the current
//     term above a floor, the smallest number the proposer still waited for
//     when it stamped its latest entry. A first copy is never skipped while
//     its caller waits; a late first copy of a proposal whose caller gave up
//     (timeout, cancel) may be, which its ErrTimeout already allows. This
//     state is part of the replicated state: snapshots carry it, so a member
//     restored from a snapshot taken between two copies skips the second as
//     well.
//   - ReadIndex returns nil only after a quorum confirmed the leader's commit
//     index (raft's ReadOnlySafe) and this node applied up to it. Reads that
//     arrive while a round is in flight share the next round. A member cut
//     off from the quorum never succeeds; its calls end with their context.
//   - PreVote and CheckQuorum are on: an isolated leader steps down after an
//     election timeout and cannot disrupt the rest when it returns.
//   - Membership changes are made by the leader only, one at a time, and
//     return once applied on the leader. ChangeMembership makes several
//     single changes as one, with joint consensus (raft's automatic
//     transition): no configuration in between ever applies, and raft
//     leaves the joint configuration with the leader's next entry.
//     Status().ConfChangePending is set while a change may be in the log
//     unapplied, is queued, or a joint configuration is not yet left. raft
//     refuses a change while an earlier one may be unapplied (e.g. right
//     after an election); the node then retries it as its applied index
//     advances. A committed change raft could not apply (it would panic) is
//     cancelled on every member alike. A removed member learns of its
//     removal only if it applies the change (a leader removing itself
//     always does); otherwise Status().Removed stays false and it simply
//     stops hearing from the cluster. Every member keeps the replicated set
//     of ids that left the configuration (WasRemoved; snapshots carry it),
//     so the layer above can tell such a member so. A StateMachine that
//     implements ConfChangeObserver sees every applied change with its
//     context, so membership metadata can live in the replicated state;
//     the raft ConfState travels in snapshot metadata.
//   - After SnapshotCount applied entries the state machine is captured
//     (StateMachine.Snapshot, on the raft loop), a snapshot is stored in
//     raft's storage and the log compacted, keeping SnapshotCatchUpEntries
//     entries. The stored snapshot's data is a small token: the node keeps
//     the latest capture (and the at-most-once state as of its index), not
//     serialized bytes. Only when raft sends the snapshot to a follower
//     further behind does the snapshot writer goroutine serialize the
//     capture, into an exactly sized buffer; the loop then sends it.
//     Followers that need the same snapshot meanwhile share those bytes,
//     which are dropped once their sends are reported (or a newer snapshot
//     is taken). A send whose capture was replaced is reported failed, and
//     raft retries with the newer snapshot. The follower calls
//     StateMachine.Restore and likewise keeps a capture of the restored
//     state, not the received bytes. Snapshot data wraps the state machine's
//     bytes with a format version, the at-most-once state, the removed set
//     and a CRC-32C; a member that gets data it cannot decode stops with
//     ErrBadSnapshot. Restore receives exactly the state machine's bytes.
//   - A cluster may be founded on state the state machine already holds
//     (Config.BootstrapFromState): the founders' logs then begin with a
//     snapshot of that state instead of the configuration entries, so it
//     reaches every later member as a snapshot. Config.BootstrapIndex,
//     BootstrapTerm and Removed place that snapshot where a recovered
//     member's log left off.
//   - A failure of the raft loop (a panic, state raft cannot store, a
//     snapshot that cannot be restored) stops the node: Done is closed and
//     Err says why; every call then fails with ErrStopped wrapping it.
//   - Close hands leadership to the most caught-up voter that seems
//     reachable (moving on to the next if the transport reports it
//     unreachable), bounded by Config.CloseTimeout; afterwards every call
//     returns ErrStopped.
//
// # Goroutines
//
//   - The raft loop (one per Node) owns the RawNode, the MemoryStorage, the
//     applied index and membership, the sequence numbers, the waiters of
//     pending proposals (with their envelopes, for re-proposal) and
//     membership changes, the at-most-once state, the read-index batches
//     and pending transfers. It
//     alone calls StateMachine.Apply, Snapshot and Restore and
//     Transport.Send. It drives raft's clock with a time.Ticker (or
//     Node.Tick when Config.DisableTicker is set). Callers reach it through
//     buffered channels (proposals are drained in batches), and Step /
//     ReportUnreachable / ReportSnapshot go through a bounded, non-blocking
//     inbox, so no caller ever blocks the loop and the loop never waits for
//     a caller: results go to per-call channels of capacity one.
//   - The snapshot writer (one per Node) runs io.WriterTo.WriteTo for one
//     state machine capture at a time, when a follower needs the snapshot,
//     and returns the bytes to the loop, which sends them.
//
// Both are started by New and stopped and waited for by Close. Node does not
// start a goroutine per message or per request.
//
// # Usage
//
//	n, err := raftadapter.New(raftadapter.Config{
//		ID:    1,
//		Peers: []uint64{1, 2, 3}, // empty when joining an existing cluster
//	}, stateMachine, transport)
//	if err != nil {
//		return err
//	}
//	defer n.Close()
//	// The transport delivers incoming messages with n.Step(m).
//	res, err := n.Propose(ctx, payload) // res is what stateMachine.Apply returned
//	if err := n.ReadIndex(ctx); err == nil {
//		// read stateMachine locally: linearizable
//	}
//	_ = n.AddLearner(ctx, 4, []byte("http://10.0.0.4:2379"))
//	_ = n.Promote(ctx, 4)
//
// Status reports leader, term, indexes, membership, the leader's view of
// follower progress and counters; LeaderTerm is the leader and term alone,
// a single atomic load for hot paths; Changes wakes subscribers on leader,
// term and membership changes.
package raftadapter
