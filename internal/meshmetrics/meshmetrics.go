// Package meshmetrics gives the metrics package its view of the mesh
// transport (metrics.Mesh): per-peer paths, traffic and round trips, and the
// transport's totals. The transport reports only each peer's newest round
// trip, so Source.Run samples them into a histogram per peer; Run is the
// package's only goroutine, owned by the caller and stopped by its ctx.
package meshmetrics

import (
	"context"
	"sync"
	"time"

	"github.com/meshkv/meshkv/internal/metrics"
	"github.com/meshkv/meshkv/meshtransport"
)

// Transport is the mesh transport as its metrics see it.
type Transport interface {
	// Stats returns the transport's counters; it must not block on the
	// network.
	Stats() meshtransport.Stats
}

// Source is the metrics' view of the mesh transport. The transport keeps
// per-peer counters, paths and path switches itself; it reports only each
// peer's newest round trip, so Run samples those once per probe interval
// into a histogram per peer.
type Source struct {
	tr       Transport
	interval time.Duration

	mu   sync.Mutex
	rtts map[meshtransport.MemberID]*rttSamples
}

// rttSamples is the round-trip history sampled for one peer.
type rttSamples struct {
	rec  *metrics.RTTRecorder
	last time.Duration
}

var _ metrics.Mesh = (*Source)(nil)

// New returns a Source reading tr.
func New(tr Transport) *Source {
	return &Source{
		tr:       tr,
		interval: meshtransport.DefaultProbeInterval,
		rtts:     map[meshtransport.MemberID]*rttSamples{},
	}
}

// Run samples the transport's round trips until ctx ends. The caller owns
// the goroutine that runs it.
func (m *Source) Run(ctx context.Context) {
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

func (m *Source) sample() {
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

// metricsPath is the metrics' name for a path.
func metricsPath(p meshtransport.Path) metrics.Path {
	switch p {
	case meshtransport.PathDirect:
		return metrics.PathDirect
	case meshtransport.PathRelayed:
		return metrics.PathRelayed
	}
	return metrics.PathDead
}

// MeshPeers lists the transport's peers with their sampled round trips.
func (m *Source) MeshPeers() []metrics.Peer {
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

// MeshTotals returns the transport's node-wide counters.
func (m *Source) MeshTotals() metrics.Totals {
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
