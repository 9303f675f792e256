package metrics

import (
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type fakeServer struct{ st ServerStats }

func (f *fakeServer) ServerStats() ServerStats { return f.st }

type fakeMesh struct {
	peers  []Peer
	totals Totals
}

func (f *fakeMesh) MeshPeers() []Peer  { return f.peers }
func (f *fakeMesh) MeshTotals() Totals { return f.totals }

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(out, "\n"+l+"\n") {
			t.Errorf("scrape lacks the line %q", l)
		}
	}
}

func TestServerMetricsReadAtScrape(t *testing.T) {
	src := &fakeServer{}
	m, err := New(Config{Server: src, MemberID: 0xabc, Versions: Versions{Server: "3.7.0", Cluster: "3.7.0", Meshkv: "9.9"}})
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, scrape(t, m), "etcd_server_has_leader 0", "etcd_mvcc_put_total 0")
	src.st = ServerStats{
		MemberID: 0xabc, HasLeader: true, IsLeader: true, LeaderChanges: 3, CommitIndex: 10, AppliedIndex: 9,
		PendingProposals: 2, ProposalsFailed: 1, StoreBytes: 4096, QuotaBytes: 8192, Keys: 5, Revision: 7,
		Puts: 11, Ranges: 12, Deletes: 13, Txns: 14, Watchers: 3, SlowWatchers: 1, WatchStreams: 2,
		LeasesGranted: 4, LeasesRenewed: 6,
	}
	wantLines(t, scrape(t, m),
		"etcd_server_has_leader 1", "etcd_server_is_leader 1", "etcd_server_leader_changes_seen_total 3",
		"etcd_server_proposals_committed_total 10", "etcd_server_proposals_applied_total 9",
		"etcd_server_proposals_pending 2", "etcd_server_proposals_failed_total 1",
		"etcd_mvcc_db_total_size_in_bytes 4096", "etcd_mvcc_db_total_size_in_use_in_bytes 4096",
		"etcd_server_quota_backend_bytes 8192", "etcd_debugging_mvcc_keys_total 5",
		"etcd_mvcc_put_total 11", "etcd_mvcc_range_total 12", "etcd_mvcc_delete_total 13", "etcd_mvcc_txn_total 14",
		"etcd_debugging_mvcc_watcher_total 3", "etcd_debugging_mvcc_slow_watcher_total 1", "etcd_debugging_mvcc_watch_stream_total 2",
		"etcd_debugging_lease_granted_total 4", "etcd_debugging_lease_renewed_total 6",
		`etcd_server_id{server_id="abc"} 1`, `etcd_server_version{server_version="3.7.0"} 1`,
		`etcd_cluster_version{cluster_version="3.7.0"} 1`, `meshkv_build_info{version="9.9"} 1`,
		"# TYPE etcd_server_proposals_committed_total gauge", "# TYPE etcd_mvcc_put_total counter",
	)
	if out := scrape(t, m); !strings.Contains(out, "process_resident_memory_bytes ") || !strings.Contains(out, "go_goroutines ") {
		t.Error("the process and Go collectors are missing")
	}
	// No mesh: no meshkv_mesh_* series.
	if out := scrape(t, m); strings.Contains(out, "meshkv_mesh_messages_sent_total ") {
		t.Error("mesh metrics without a mesh")
	}
}

func TestMeshMetrics(t *testing.T) {
	rec := NewRTTRecorder()
	for _, d := range []time.Duration{50 * time.Microsecond, 300 * time.Microsecond, 300 * time.Microsecond, 10 * time.Second} {
		rec.Observe(d)
	}
	switches := uint64(2)
	relayed := uint64(4096)
	mesh := &fakeMesh{
		peers: []Peer{
			{Name: "aa:bb", Member: 0x11, Path: PathDirect, RTT: 300 * time.Microsecond, RTTs: rec.Histogram(), PathSwitches: &switches,
				Traffic: &Traffic{SentBytes: 100, ReceivedBytes: 200, SentMessages: 3, ReceivedMessages: 4}},
			{Name: "cc:dd", Member: 0x22, Path: PathRelayed, Via: "aa:bb"},
			{Name: "ee:ff", Path: PathDead},
			{Name: "ee:ff", Path: PathDirect}, // duplicate: ignored
			{Name: ""},                        // nameless: ignored
		},
		totals: Totals{Connections: 2, MessagesSent: 10, Relayed: 5, RelayedBytes: &relayed, SnapshotsSent: 1},
	}
	m, err := New(Config{Server: &fakeServer{}, Mesh: mesh, MemberID: 0x99})
	if err != nil {
		t.Fatal(err)
	}
	out := scrape(t, m)
	wantLines(t, out,
		`meshkv_peer_path{member="11",path="direct",peer="aa:bb"} 1`,
		`meshkv_peer_path{member="11",path="dead",peer="aa:bb"} 0`,
		`meshkv_peer_path{member="22",path="relayed",peer="cc:dd"} 1`,
		`meshkv_peer_path{member="",path="dead",peer="ee:ff"} 1`,
		`meshkv_peer_probe_rtt_seconds{member="11",peer="aa:bb"} 0.0003`,
		`meshkv_peer_probe_round_trip_seconds_count{member="11",peer="aa:bb"} 4`,
		`meshkv_peer_probe_round_trip_seconds_bucket{member="11",peer="aa:bb",le="0.0001"} 1`,
		`meshkv_peer_probe_round_trip_seconds_bucket{member="11",peer="aa:bb",le="0.0004"} 3`,
		`meshkv_peer_probe_round_trip_seconds_bucket{member="11",peer="aa:bb",le="3.2768"} 3`,
		`meshkv_peer_probe_round_trip_seconds_bucket{member="11",peer="aa:bb",le="+Inf"} 4`,
		`etcd_network_peer_round_trip_time_seconds_count{To="11"} 4`,
		`etcd_network_peer_sent_bytes_total{To="11"} 100`,
		`etcd_network_peer_received_bytes_total{From="11"} 200`,
		`etcd_network_active_peers{Local="99",Remote="11"} 1`,
		`etcd_network_active_peers{Local="99",Remote="22"} 1`,
		`meshkv_peer_path_switches_total{member="11",peer="aa:bb"} 2`,
		`meshkv_mesh_peers{path="direct"} 1`, `meshkv_mesh_peers{path="relayed"} 1`, `meshkv_mesh_peers{path="dead"} 1`,
		"meshkv_mesh_connections 2", "meshkv_mesh_messages_sent_total 10", "meshkv_mesh_relayed_messages_total 5",
		"meshkv_mesh_relayed_bytes_total 4096", "meshkv_mesh_snapshots_sent_total 1",
	)
	// Untracked numbers are left out, not reported as zero.
	for _, absent := range []string{`etcd_network_peer_round_trip_time_seconds_count{To="22"}`, `etcd_network_peer_sent_bytes_total{To="22"}`, "meshkv_mesh_snapshots_received_total "} {
		if strings.Contains(out, absent) {
			t.Errorf("scrape reports untracked %q", absent)
		}
	}
	mesh.totals.Connections = -1
	if strings.Contains(scrape(t, m), "meshkv_mesh_connections ") {
		t.Error("meshkv_mesh_connections reported although the transport cannot tell")
	}
}

func TestRTTRecorderSumAndBounds(t *testing.T) {
	r := NewRTTRecorder()
	r.Observe(100 * time.Microsecond) // exactly a bound: in that bucket
	r.Observe(-time.Second)           // ignored
	h := r.Histogram()
	if h.Count != 1 || h.Buckets[0] != 1 || h.Sum != 0.0001 || len(h.Buckets) != len(RTTBuckets()) {
		t.Fatalf("histogram %+v", h)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{Server: &fakeServer{}, Level: "loud"}); err == nil {
		t.Error("a bad level was accepted")
	}
	if _, err := New(Config{}); err == nil {
		t.Error("a config without a server was accepted")
	}
}

// TestRegistriesAreIndependent builds two registries in one process, as
// two nodes do, with gRPC metrics on each.
func TestRegistriesAreIndependent(t *testing.T) {
	for range 2 {
		m, err := New(Config{Server: &fakeServer{}, Level: Extensive})
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer(m.Interceptors()...)
		healthpb.RegisterHealthServer(s, health.NewServer())
		m.InitGRPC(s)
		mfs, err := m.Registry().Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		found := false
		for _, mf := range mfs {
			found = found || mf.GetName() == "grpc_server_handling_seconds"
		}
		if !found {
			t.Fatal("extensive metrics lack grpc_server_handling_seconds")
		}
	}
}

func TestCountingCodec(t *testing.T) {
	m, err := New(Config{Server: &fakeServer{}})
	if err != nil {
		t.Fatal(err)
	}
	c := m.Codec(encoding.GetCodecV2(proto.Name))
	out, err := c.Marshal(wrapperspb.String("hello"))
	if err != nil {
		t.Fatal(err)
	}
	n := out.Len()
	var back wrapperspb.StringValue
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(out.Materialize())}, &back); err != nil || back.Value != "hello" {
		t.Fatalf("round trip: %v %v", &back, err)
	}
	wantLines(t, scrape(t, m),
		"etcd_network_client_grpc_sent_bytes_total "+strconv.Itoa(n),
		"etcd_network_client_grpc_received_bytes_total "+strconv.Itoa(n))
}
