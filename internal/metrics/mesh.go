package metrics

import (
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Mesh is the peer transport as its metrics see it. Both methods are called
// once per scrape and must not block on the network.
type Mesh interface {
	// MeshPeers lists the other peers of this node's cluster that the
	// transport knows (not this node).
	MeshPeers() []Peer
	// MeshTotals returns the transport's node-wide counters.
	MeshTotals() Totals
}

// Path is how a peer is reached.
type Path uint8

const (
	// PathDead: no live route, neither direct nor through a relay.
	PathDead Path = iota
	// PathDirect: the mesh's own route (a direct connection, or mesh's
	// routing through other peers), answering probes.
	PathDirect
	// PathRelayed: the direct route is dead; traffic detours through a
	// relay peer.
	PathRelayed
)

func (p Path) String() string {
	switch p {
	case PathDirect:
		return "direct"
	case PathRelayed:
		return "relayed"
	}
	return "dead"
}

// numPaths is the number of Path values.
const numPaths = 3

// Peer is one peer at one instant. The pointer fields are optional: nil
// means the transport does not track that number, and its metrics are left
// out for the peer.
type Peer struct {
	Name   string // mesh peer name
	Member uint64 // raft member id; 0 while the peer is not a member
	Path   Path
	Via    string        // the relay's peer name, when relayed
	RTT    time.Duration // round trip of the newest answered probe; 0 if none yet

	// RTTs is the distribution of every answered probe's round trip.
	RTTs *Histogram
	// Traffic counts raft traffic to and from the peer.
	Traffic *Traffic
	// PathSwitches counts changes of Path (direct, relayed through one
	// relay or another, dead).
	PathSwitches *uint64
}

// Traffic counts what went to and came from one peer.
type Traffic struct {
	SentBytes, ReceivedBytes       uint64
	SentMessages, ReceivedMessages uint64
}

// Totals are a transport's node-wide counters, cumulative since it started.
type Totals struct {
	// Connections is the number of established mesh connections; -1 when
	// the transport cannot tell.
	Connections int
	// MessagesSent, MessagesReceived and MessagesDropped count raft
	// messages.
	MessagesSent, MessagesReceived, MessagesDropped uint64
	// Detoured counts our raft messages sent through a relay.
	Detoured uint64
	// Relayed counts frames this node forwarded for other peers, RelayDropped
	// those it could not forward; RelayedBytes their bytes (nil: untracked).
	Relayed, RelayDropped uint64
	RelayedBytes          *uint64
	// Chunks of large messages (snapshots) sent and received.
	ChunksSent, ChunksReceived uint64
	// SnapshotsSent counts snapshots acknowledged whole by their receiver;
	// SnapshotsReceived those received whole (nil: untracked);
	// TransfersFailed outbound chunked transfers that failed;
	// TransfersAbandoned inbound ones dropped unfinished.
	SnapshotsSent                       uint64
	SnapshotsReceived                   *uint64
	TransfersFailed, TransfersAbandoned uint64
}

// RTTBuckets are the upper bounds, in seconds, of the probe round-trip
// histograms: etcd's for etcd_network_peer_round_trip_time_seconds (0.1 ms
// doubling to 3.2768 s).
func RTTBuckets() []float64 { return prometheus.ExponentialBuckets(0.0001, 2, 16) }

// Histogram is a cumulative distribution over RTTBuckets.
type Histogram struct {
	Count uint64
	Sum   float64 // seconds
	// Buckets[i] counts the samples at most RTTBuckets()[i] (cumulative, as
	// Prometheus's buckets); len(Buckets) == len(RTTBuckets()).
	Buckets []uint64
}

// meshCollector turns the transport's view into metrics at scrape time.
type meshCollector struct {
	mesh  func() Mesh
	local string // this member's id, hex (etcd's Local label)
	d     meshDescs
	le    []float64
}

type meshDescs struct {
	path, rtt, rttHist, switches                      *prometheus.Desc
	etcdRTT, etcdSent, etcdReceived, activePeers      *prometheus.Desc
	peerSentMsgs, peerRecvMsgs                        *prometheus.Desc
	conns, peers                                      *prometheus.Desc
	sent, received, dropped, detoured                 *prometheus.Desc
	relayed, relayDropped, relayedBytes               *prometheus.Desc
	chunksSent, chunksReceived                        *prometheus.Desc
	snapsSent, snapsReceived, xferFailed, xferAbandon *prometheus.Desc
}

func newMeshCollector(mesh func() Mesh, local uint64) *meshCollector {
	g := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &meshCollector{mesh: mesh, local: strconv.FormatUint(local, 16), le: RTTBuckets(), d: meshDescs{
		path:           g("meshkv_peer_path", "1 for the way each peer is reached now (path: direct, relayed or dead), 0 for the others.", "peer", "member", "path"),
		rtt:            g("meshkv_peer_probe_rtt_seconds", "Round trip of the newest answered probe to the peer.", "peer", "member"),
		rttHist:        g("meshkv_peer_probe_round_trip_seconds", "Round trips of answered probes to the peer.", "peer", "member"),
		switches:       g("meshkv_peer_path_switches_total", "Changes of the way the peer is reached (direct, relayed through a relay, dead).", "peer", "member"),
		peerSentMsgs:   g("meshkv_peer_sent_messages_total", "Raft messages sent to the peer.", "peer", "member"),
		peerRecvMsgs:   g("meshkv_peer_received_messages_total", "Raft messages received from the peer.", "peer", "member"),
		etcdRTT:        g("etcd_network_peer_round_trip_time_seconds", "Round trips of probes to each member (meshkv's probes play the part of etcd's peer heartbeats).", "To"),
		etcdSent:       g("etcd_network_peer_sent_bytes_total", "Bytes of raft traffic sent to each member.", "To"),
		etcdReceived:   g("etcd_network_peer_received_bytes_total", "Bytes of raft traffic received from each member.", "From"),
		activePeers:    g("etcd_network_active_peers", "1 for each member currently reachable, directly or through a relay.", "Local", "Remote"),
		conns:          g("meshkv_mesh_connections", "Established mesh connections."),
		peers:          g("meshkv_mesh_peers", "Peers of this cluster the transport knows, by path.", "path"),
		sent:           g("meshkv_mesh_messages_sent_total", "Raft messages handed to the mesh."),
		received:       g("meshkv_mesh_messages_received_total", "Raft messages received from the mesh."),
		dropped:        g("meshkv_mesh_messages_dropped_total", "Outbound raft messages dropped (full queue, no route, too large)."),
		detoured:       g("meshkv_mesh_detoured_messages_total", "Raft messages sent through a relay because the direct route was dead."),
		relayed:        g("meshkv_mesh_relayed_messages_total", "Frames this node forwarded as the relay for other peers."),
		relayDropped:   g("meshkv_mesh_relay_dropped_total", "Frames this node could not forward as a relay."),
		relayedBytes:   g("meshkv_mesh_relayed_bytes_total", "Bytes this node forwarded as the relay for other peers."),
		chunksSent:     g("meshkv_mesh_chunks_sent_total", "Chunks of large messages (snapshots) sent."),
		chunksReceived: g("meshkv_mesh_chunks_received_total", "Chunks of large messages (snapshots) received."),
		snapsSent:      g("meshkv_mesh_snapshots_sent_total", "Snapshots sent and acknowledged whole by the receiver."),
		snapsReceived:  g("meshkv_mesh_snapshots_received_total", "Snapshots received whole."),
		xferFailed:     g("meshkv_mesh_snapshot_transfers_failed_total", "Outbound chunked transfers that failed (lost chunk, no acknowledgement in time)."),
		xferAbandon:    g("meshkv_mesh_snapshot_transfers_abandoned_total", "Inbound chunked transfers dropped unfinished after the timeout."),
	}}
}

func (c *meshCollector) Describe(ch chan<- *prometheus.Desc) {
	d := &c.d
	for _, x := range []*prometheus.Desc{
		d.path, d.rtt, d.rttHist, d.switches, d.peerSentMsgs, d.peerRecvMsgs,
		d.etcdRTT, d.etcdSent, d.etcdReceived, d.activePeers,
		d.conns, d.peers, d.sent, d.received, d.dropped, d.detoured,
		d.relayed, d.relayDropped, d.relayedBytes, d.chunksSent, d.chunksReceived,
		d.snapsSent, d.snapsReceived, d.xferFailed, d.xferAbandon,
	} {
		ch <- x
	}
}

func (c *meshCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.mesh()
	if m == nil {
		return
	}
	d := &c.d
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	t := m.MeshTotals()
	if t.Connections >= 0 {
		gauge(d.conns, float64(t.Connections))
	}
	counter(d.sent, t.MessagesSent)
	counter(d.received, t.MessagesReceived)
	counter(d.dropped, t.MessagesDropped)
	counter(d.detoured, t.Detoured)
	counter(d.relayed, t.Relayed)
	counter(d.relayDropped, t.RelayDropped)
	if t.RelayedBytes != nil {
		counter(d.relayedBytes, *t.RelayedBytes)
	}
	counter(d.chunksSent, t.ChunksSent)
	counter(d.chunksReceived, t.ChunksReceived)
	counter(d.snapsSent, t.SnapshotsSent)
	if t.SnapshotsReceived != nil {
		counter(d.snapsReceived, *t.SnapshotsReceived)
	}
	counter(d.xferFailed, t.TransfersFailed)
	counter(d.xferAbandon, t.TransfersAbandoned)

	var byPath [numPaths]int
	peers := m.MeshPeers()
	seen := make(map[string]bool, len(peers))
	for _, p := range peers {
		if p.Name == "" || seen[p.Name] {
			continue // a malformed view must not fail the scrape
		}
		seen[p.Name] = true
		member := ""
		if p.Member != 0 {
			member = strconv.FormatUint(p.Member, 16)
		}
		for path := range Path(numPaths) {
			v := 0.0
			if p.Path == path {
				v = 1
				byPath[path]++
			}
			gauge(d.path, v, p.Name, member, path.String())
		}
		if p.RTT > 0 {
			gauge(d.rtt, p.RTT.Seconds(), p.Name, member)
		}
		if h := c.histogram(p.RTTs); h != nil {
			ch <- prometheus.MustNewConstHistogram(d.rttHist, h.Count, h.Sum, h.buckets, p.Name, member)
			if member != "" {
				ch <- prometheus.MustNewConstHistogram(d.etcdRTT, h.Count, h.Sum, h.buckets, member)
			}
		}
		if p.PathSwitches != nil {
			counter(d.switches, *p.PathSwitches, p.Name, member)
		}
		if p.Traffic != nil {
			counter(d.peerSentMsgs, p.Traffic.SentMessages, p.Name, member)
			counter(d.peerRecvMsgs, p.Traffic.ReceivedMessages, p.Name, member)
			if member != "" {
				counter(d.etcdSent, p.Traffic.SentBytes, member)
				counter(d.etcdReceived, p.Traffic.ReceivedBytes, member)
			}
		}
		if member != "" {
			gauge(d.activePeers, b2f(p.Path != PathDead), c.local, member)
		}
	}
	for path := range Path(numPaths) {
		gauge(d.peers, float64(byPath[path]), path.String())
	}
}

// constHistogram is a Histogram in the form MustNewConstHistogram takes.
type constHistogram struct {
	Count   uint64
	Sum     float64
	buckets map[float64]uint64
}

// histogram converts h; nil if h is nil or malformed.
func (c *meshCollector) histogram(h *Histogram) *constHistogram {
	if h == nil || len(h.Buckets) != len(c.le) {
		return nil
	}
	out := &constHistogram{Count: h.Count, Sum: h.Sum, buckets: make(map[float64]uint64, len(c.le))}
	for i, le := range c.le {
		out.buckets[le] = h.Buckets[i]
	}
	return out
}

// RTTRecorder accumulates round trips into a Histogram over RTTBuckets with
// atomic updates only, for transports (or adapters) that record probes as
// they are answered. The zero value is not usable; see NewRTTRecorder.
type RTTRecorder struct {
	le      []float64
	counts  []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sumNano atomic.Uint64
}

// NewRTTRecorder returns an empty recorder.
func NewRTTRecorder() *RTTRecorder {
	le := RTTBuckets()
	return &RTTRecorder{le: le, counts: make([]atomic.Uint64, len(le)+1)}
}

// Observe records one round trip.
func (r *RTTRecorder) Observe(d time.Duration) {
	if d < 0 {
		return
	}
	sec := d.Seconds()
	i, _ := slices.BinarySearch(r.le, sec)
	r.counts[i].Add(1)
	r.sumNano.Add(uint64(d))
}

// Histogram returns the distribution so far.
func (r *RTTRecorder) Histogram() *Histogram {
	h := &Histogram{Buckets: make([]uint64, len(r.le))}
	var cum uint64
	for i := range r.le {
		cum += r.counts[i].Load()
		h.Buckets[i] = cum
	}
	h.Count = cum + r.counts[len(r.le)].Load()
	h.Sum = time.Duration(r.sumNano.Load()).Seconds()
	return h
}
