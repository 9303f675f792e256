package meshkv

import (
	"context"
	"slices"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshkv/meshkv/internal/health"
	"github.com/meshkv/meshkv/internal/metrics"
	"github.com/meshkv/meshkv/meshtransport"
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
	rn := h.n.raft.Load()
	return rn != nil && rn.Status().Leader != 0
}

func (h healthView) IsLearner() bool {
	rn := h.n.raft.Load()
	return rn != nil && slices.Contains(rn.Status().Learners, h.n.id)
}

func (h healthView) Read(ctx context.Context, serializable bool) error {
	return h.n.api.CheckRead(ctx, serializable)
}

// meshStats is the metrics' view of the mesh transport. The transport keeps
// per-peer counters, paths and path switches itself; it reports only each
// peer's newest round trip, so run samples those once per probe interval
// into a histogram per peer.
type meshStats struct {
	tr       *meshtransport.Transport
	interval time.Duration

	mu   sync.Mutex
	rtts map[meshtransport.MemberID]*rttSamples
}

// rttSamples is the round-trip history sampled for one peer.
type rttSamples struct {
	rec  *metrics.RTTRecorder
	last time.Duration
}

var _ metrics.Mesh = (*meshStats)(nil)

func newMeshStats(tr *meshtransport.Transport) *meshStats {
	return &meshStats{
		tr:       tr,
		interval: meshtransport.DefaultProbeInterval,
		rtts:     map[meshtransport.MemberID]*rttSamples{},
	}
}

// run samples the transport until ctx ends.
func (m *meshStats) run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.sample()
		}
	}
}

func (m *meshStats) sample() {
	peers := m.tr.Stats().Peers
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := make(map[meshtransport.MemberID]bool, len(peers))
	for _, p := range peers {
		seen[p.ID] = true
		rs, ok := m.rtts[p.ID]
		if !ok {
			rs = &rttSamples{rec: metrics.NewRTTRecorder()}
			m.rtts[p.ID] = rs
		}
		if p.RTT > 0 && p.RTT != rs.last {
			rs.rec.Observe(p.RTT)
			rs.last = p.RTT
		}
	}
	for id := range m.rtts {
		if !seen[id] {
			delete(m.rtts, id)
		}
	}
}

func metricsPath(p meshtransport.Path) metrics.Path {
	switch p {
	case meshtransport.PathDirect:
		return metrics.PathDirect
	case meshtransport.PathRelayed:
		return metrics.PathRelayed
	}
	return metrics.PathDead
}

func (m *meshStats) MeshPeers() []metrics.Peer {
	peers := m.tr.Stats().Peers
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]metrics.Peer, 0, len(peers))
	for _, p := range peers {
		mp := metrics.Peer{
			Name:   p.Name.String(),
			Member: uint64(p.ID),
			Path:   metricsPath(p.Path),
			RTT:    p.RTT,
			Traffic: &metrics.Traffic{
				SentBytes:        p.BytesDirect + p.BytesRelayed,
				ReceivedBytes:    p.BytesIn,
				SentMessages:     p.MsgsDirect + p.MsgsRelayed,
				ReceivedMessages: p.MsgsIn,
			},
		}
		switches := p.PathSwitches
		mp.PathSwitches = &switches
		if rs, ok := m.rtts[p.ID]; ok {
			mp.RTTs = rs.rec.Histogram()
		}
		out = append(out, mp)
	}
	return out
}

func (m *meshStats) MeshTotals() metrics.Totals {
	st := m.tr.Stats()
	relayedBytes := st.Router.RelayedForOthersByte
	snapsReceived := st.SnapshotsReceived
	return metrics.Totals{
		Connections:        st.Router.Connections,
		MessagesSent:       st.SentDirect + st.SentRelayed,
		MessagesReceived:   st.Received,
		MessagesDropped:    st.Dropped(),
		Detoured:           st.SentRelayed,
		Relayed:            st.Router.RelayedForOthers,
		RelayedBytes:       &relayedBytes,
		ChunksSent:         st.ChunksSent,
		ChunksReceived:     st.ChunksReceived,
		SnapshotsSent:      st.SnapshotsSent,
		SnapshotsReceived:  &snapsReceived,
		TransfersFailed:    st.SnapshotsFailed,
		TransfersAbandoned: st.TransfersAbandoned,
	}
}
