package meshkv

import (
	"context"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshkv/meshkv/internal/health"
	"github.com/meshkv/meshkv/internal/metrics"
)

// serverStats gives the metrics the node's numbers.
type serverStats struct{ n *Node }

var _ metrics.Server = serverStats{}

func (s serverStats) ServerStats() metrics.ServerStats {
	n := s.n
	st := metrics.ServerStats{
		MemberID:        n.id,
		StoreBytes:      n.store.Size(),
		QuotaBytes:      n.api.QuotaBytes(),
		Keys:            n.store.Keys(),
		Revision:        n.store.Rev(),
		CompactRevision: n.store.CompactRev(),
	}
	if rn := n.raft.Load(); rn != nil {
		rs := rn.Status()
		m := rs.Metrics
		st.HasLeader, st.IsLeader = rs.Leader != 0, rs.IsLeader
		st.IsLearner = slices.Contains(rs.Learners, n.id)
		st.LeaderChanges = m.LeaderChanges
		st.CommitIndex, st.AppliedIndex, st.Term = rs.CommitIndex, rs.AppliedIndex, rs.Term
		st.PendingProposals = m.PendingProposals
		st.ProposalsFailed = m.ProposalsDropped + m.ProposalsLost
		if rs.CommitIndex > rs.SnapshotIndex {
			st.LogEntries = rs.CommitIndex - rs.SnapshotIndex
		}
		st.SnapshotsTaken, st.SnapshotsRestored = m.SnapshotsTaken, m.SnapshotsRestored
		st.PendingReads, st.ReadRounds = m.PendingReads, m.ReadRounds
	}
	ks := n.api.Stats()
	st.Ranges, st.Puts, st.Deletes, st.Txns = ks.Ranges, ks.Puts, ks.Deletes, ks.Txns
	st.WatchStreams, st.Watchers, st.SlowWatchers, st.WatchEvents = ks.WatchStreams, ks.Watchers, ks.SlowWatchers, ks.WatchEvents
	st.LeasesGranted, st.LeasesRevoked = ks.LeasesGranted, ks.LeasesRevoked
	st.LeasesRenewed, st.LeasesExpired = ks.LeasesRenewed, ks.LeasesExpired
	return st
}

// healthView gives the health checks the node's state.
type healthView struct{ n *Node }

var _ health.Server = healthView{}

func (h healthView) Alarms() []pb.AlarmType { return h.n.api.Alarms() }

func (h healthView) HasLeader() bool {
	leader, _ := clusterView{h.n}.LeaderTerm()
	return leader != 0
}

func (h healthView) IsLearner() bool {
	rn := h.n.raft.Load()
	return rn != nil && slices.Contains(rn.Status().Learners, h.n.id)
}

func (h healthView) Read(ctx context.Context, serializable bool) error {
	return h.n.api.CheckRead(ctx, serializable)
}
