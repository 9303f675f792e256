package clusterview

import (
	"context"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshkv/meshkv/internal/health"
	"github.com/meshkv/meshkv/internal/metrics"
	"github.com/meshkv/meshkv/kvapi"
	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// Store is what the node's numbers need of the store.
type Store interface {
	Size() int64
	Keys() int64
	Rev() int64
	CompactRev() int64
}

var _ Store = (*mvcc.Store)(nil)

// Service is what the metrics and the health checks need of the etcd API
// server.
type Service interface {
	QuotaBytes() int64
	Stats() kvapi.Stats
	Alarms() []pb.AlarmType
	CheckRead(ctx context.Context, serializable bool) error
}

var _ Service = (*kvapi.Server)(nil)

// Observer gives the metrics the node's numbers and the health checks its
// state.
type Observer struct {
	v     *View
	store Store
	api   Service
}

var (
	_ metrics.Server = Observer{}
	_ health.Server  = Observer{}
)

// Observer returns the metrics' and the health checks' view of the node
// whose store and API server these are.
func (v *View) Observer(store Store, api Service) Observer {
	return Observer{v: v, store: store, api: api}
}

// ServerStats returns the node's numbers.
func (o Observer) ServerStats() metrics.ServerStats {
	id := o.v.cfg.ID
	st := metrics.ServerStats{
		MemberID:        id,
		StoreBytes:      o.store.Size(),
		QuotaBytes:      o.api.QuotaBytes(),
		Keys:            o.store.Keys(),
		Revision:        o.store.Rev(),
		CompactRevision: o.store.CompactRev(),
	}
	if rn := o.v.cfg.Raft(); rn != nil {
		rs := rn.Status()
		m := rs.Metrics
		st.HasLeader, st.IsLeader = rs.Leader != 0, rs.IsLeader
		st.IsLearner = slices.Contains(rs.Learners, id)
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
	ks := o.api.Stats()
	st.Ranges, st.Puts, st.Deletes, st.Txns = ks.Ranges, ks.Puts, ks.Deletes, ks.Txns
	st.WatchStreams, st.Watchers, st.SlowWatchers, st.WatchEvents = ks.WatchStreams, ks.Watchers, ks.SlowWatchers, ks.WatchEvents
	st.LeasesGranted, st.LeasesRevoked = ks.LeasesGranted, ks.LeasesRevoked
	st.LeasesRenewed, st.LeasesExpired = ks.LeasesRenewed, ks.LeasesExpired
	return st
}

// Alarms lists the member's active alarms.
func (o Observer) Alarms() []pb.AlarmType { return o.api.Alarms() }

// HasLeader reports whether the member knows a leader.
func (o Observer) HasLeader() bool {
	leader, _ := o.v.LeaderTerm()
	return leader != 0
}

// IsLearner reports whether the member is a learner.
func (o Observer) IsLearner() bool {
	rn := o.v.cfg.Raft()
	return rn != nil && slices.Contains(rn.Status().Learners, o.v.cfg.ID)
}

// Read performs the read etcd's health checks perform.
func (o Observer) Read(ctx context.Context, serializable bool) error {
	return o.api.CheckRead(ctx, serializable)
}
