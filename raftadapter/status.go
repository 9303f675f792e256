package raftadapter

import (
	"sync/atomic"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/tracker"
)

// Status is a point-in-time view of a node, published by the raft loop after
// every turn that changed something. Slices and maps are shared between
// callers and must not be modified.
type Status struct {
	ID     uint64
	Leader uint64 // 0 while no leader is known
	Term   uint64
	State  raft.StateType
	// IsLeader is State == raft.StateLeader.
	IsLeader bool
	// LeadTransferee is the target of a leadership transfer in progress (leader only).
	LeadTransferee uint64

	CommitIndex   uint64
	AppliedIndex  uint64
	SnapshotIndex uint64 // index of the latest snapshot held in the log storage

	// Voters and Learners are the applied membership, sorted. During a
	// joint change, Voters is the incoming configuration and
	// VotersOutgoing the outgoing one (empty otherwise).
	Voters         []uint64
	Learners       []uint64
	VotersOutgoing []uint64
	// ConfChangePending is set while a membership change may be in the log
	// unapplied, queued, or a joint configuration not yet left: raft
	// refuses a new change then.
	ConfChangePending bool
	// Progress of every member as seen by the leader; nil on other nodes.
	Progress map[uint64]Progress

	// Removed is set once this member has applied its own removal.
	Removed bool
	// Stopped is set once the node has stopped (Close, or a fatal error).
	Stopped bool

	Metrics Metrics
}

// Progress is the leader's view of one member's replication.
type Progress struct {
	Match        uint64 // highest log index known to be replicated to the member
	Next         uint64 // next index the leader will send
	State        string // "StateProbe", "StateReplicate" or "StateSnapshot"
	RecentActive bool   // heard from within the last election timeout
	IsLearner    bool
}

// Metrics are cumulative counters and current gauges of a node.
type Metrics struct {
	InboundDropped    uint64 // messages given to Step and dropped because the inbound queue was full
	InboundRejected   uint64 // malformed or unexpected inbound messages raft refused
	MessagesSent      uint64 // messages handed to the Transport
	Proposals         uint64 // payloads proposed through this node
	ProposalBatches   uint64 // raft steps that carried them (Proposals/ProposalBatches is the batch size)
	ProposalsDropped  uint64 // proposals raft refused (no leader, transfer in progress, removed)
	ProposalsLost     uint64 // proposals failed with ErrLeaderChanged or ErrOutcomeUnknown
	Reproposed        uint64 // forwarded proposals proposed again because they did not show up in the log
	DuplicatesSkipped uint64 // committed entries skipped as second copies of an applied proposal
	ReadRequests      uint64 // ReadIndex calls received
	ReadRounds        uint64 // raft read-index rounds started for them
	AppliedEntries    uint64 // log entries applied (all kinds)
	SnapshotsTaken    uint64 // local snapshots stored, after which the log was compacted
	SnapshotsRestored uint64 // snapshots received from the leader and restored
	SnapshotsWritten  uint64 // snapshot data built from a capture for sends to followers
	SnapshotsSent     uint64 // snapshot messages handed to the Transport (several may share one build)
	LeaderChanges     uint64 // times this node learnt of a new leader (etcd_server_leader_changes_seen_total)
	PendingProposals  int    // proposals and membership changes waiting to be applied
	PendingReads      int    // ReadIndex calls not yet answered
	// SnapshotBytesHeld is the size of built snapshot data the node keeps to
	// share between sends in flight; 0 at rest (the snapshot in raft's
	// storage holds a small token, not the data).
	SnapshotBytesHeld int
}

// counters are the atomically updated parts of Metrics.
type counters struct {
	inboundDropped    atomic.Uint64
	inboundRejected   atomic.Uint64
	messagesSent      atomic.Uint64
	proposals         atomic.Uint64
	proposalBatches   atomic.Uint64
	proposalsDropped  atomic.Uint64
	proposalsLost     atomic.Uint64
	reproposed        atomic.Uint64
	duplicatesSkipped atomic.Uint64
	readRequests      atomic.Uint64
	readRounds        atomic.Uint64
	appliedEntries    atomic.Uint64
	snapshotsTaken    atomic.Uint64
	snapshotsRestored atomic.Uint64
	snapshotsWritten  atomic.Uint64
	snapshotsSent     atomic.Uint64
	leaderChanges     atomic.Uint64
	pendingProposals  atomic.Int64
	snapshotBytesHeld atomic.Int64
	pendingReads      atomic.Int64
}

func (c *counters) snapshot() Metrics {
	return Metrics{
		InboundDropped:    c.inboundDropped.Load(),
		InboundRejected:   c.inboundRejected.Load(),
		MessagesSent:      c.messagesSent.Load(),
		Proposals:         c.proposals.Load(),
		ProposalBatches:   c.proposalBatches.Load(),
		ProposalsDropped:  c.proposalsDropped.Load(),
		ProposalsLost:     c.proposalsLost.Load(),
		Reproposed:        c.reproposed.Load(),
		DuplicatesSkipped: c.duplicatesSkipped.Load(),
		ReadRequests:      c.readRequests.Load(),
		ReadRounds:        c.readRounds.Load(),
		AppliedEntries:    c.appliedEntries.Load(),
		SnapshotsTaken:    c.snapshotsTaken.Load(),
		SnapshotsRestored: c.snapshotsRestored.Load(),
		SnapshotsWritten:  c.snapshotsWritten.Load(),
		SnapshotsSent:     c.snapshotsSent.Load(),
		LeaderChanges:     c.leaderChanges.Load(),
		PendingProposals:  int(c.pendingProposals.Load()),
		SnapshotBytesHeld: int(c.snapshotBytesHeld.Load()),
		PendingReads:      int(c.pendingReads.Load()),
	}
}

// leadTerm is what Node.LeaderTerm reports: one immutable value per leader
// or term change, so that readers need a single atomic load.
type leadTerm struct{ leader, term uint64 }

// publish stores a fresh Status if anything changed and wakes Changes
// subscribers on leader, term, role or membership changes.
func (l *loop) publish() {
	bs := l.rn.BasicStatus()
	st := &Status{
		ID:             l.id,
		Leader:         bs.Lead,
		Term:           bs.GetTerm(),
		State:          bs.RaftState,
		IsLeader:       bs.RaftState == raft.StateLeader,
		LeadTransferee: bs.LeadTransferee,
		CommitIndex:    bs.GetCommit(),
		AppliedIndex:   l.applied,
		SnapshotIndex:  l.snapIndex,
		Voters:         l.voters,
		Learners:       l.learners,
		VotersOutgoing: l.votersOutgoing,
		Removed:        l.removed,
	}
	st.ConfChangePending = len(l.votersOutgoing) > 0 || len(l.confQueue) > 0 ||
		st.IsLeader && l.confFence > l.applied
	if p := l.lastPub; p != nil && !l.ticked && p.Leader == st.Leader && p.Term == st.Term &&
		p.State == st.State && p.LeadTransferee == st.LeadTransferee && p.CommitIndex == st.CommitIndex &&
		p.AppliedIndex == st.AppliedIndex && p.SnapshotIndex == st.SnapshotIndex && p.Removed == st.Removed &&
		p.ConfChangePending == st.ConfChangePending &&
		l.notifyKey.memberVer == l.memberVer {
		return
	}
	ticked := l.ticked
	l.ticked = false
	if p := l.lastPub; st.IsLeader && p != nil && p.IsLeader && !ticked && p.Term == st.Term &&
		l.notifyKey.memberVer == l.memberVer {
		// Follower progress is refreshed on ticks and role or membership
		// changes, not on every turn.
		st.Progress = p.Progress
	} else if st.IsLeader {
		st.Progress = make(map[uint64]Progress, len(l.voters)+len(l.learners))
		l.rn.WithProgress(func(id uint64, typ raft.ProgressType, pr tracker.Progress) {
			st.Progress[id] = Progress{
				Match:        pr.Match,
				Next:         pr.Next,
				State:        pr.State.String(),
				RecentActive: pr.RecentActive,
				IsLearner:    pr.IsLearner,
			}
		})
	}
	l.lastPub = st
	l.n.status.Store(st)
	key := changeKey{lead: st.Leader, term: st.Term, memberVer: l.memberVer, state: st.State, removed: st.Removed}
	if lt := l.n.leadTerm.Load(); lt == nil || lt.leader != st.Leader || lt.term != st.Term {
		l.n.leadTerm.Store(&leadTerm{leader: st.Leader, term: st.Term})
	}
	if key != l.notifyKey {
		l.notifyKey = key
		l.n.notifyChanges(false)
	}
}
