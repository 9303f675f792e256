package metrics

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	meshkvhealth "github.com/meshkv/meshkv/internal/health"
)

type healthyServer struct{}

func (healthyServer) Alarms() []pb.AlarmType           { return nil }
func (healthyServer) HasLeader() bool                  { return true }
func (healthyServer) IsLearner() bool                  { return false }
func (healthyServer) Read(context.Context, bool) error { return nil }

// TestDashboardNamesExist checks that every metric the example Grafana
// dashboard queries is one a node exports (with every optional number
// tracked and --metrics extensive).
func TestDashboardNamesExist(t *testing.T) {
	data, err := os.ReadFile("../../deploy/grafana/meshkv.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}

	u := uint64(1)
	rec := NewRTTRecorder()
	rec.Observe(time.Millisecond)
	mesh := &fakeMesh{
		peers:  []Peer{{Name: "p", Member: 2, Path: PathDirect, RTT: time.Millisecond, RTTs: rec.Histogram(), Traffic: &Traffic{}, PathSwitches: &u}},
		totals: Totals{Connections: 1, RelayedBytes: &u, SnapshotsReceived: &u},
	}
	m, err := New(Config{Server: &fakeServer{}, Mesh: mesh, Level: Extensive})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(m.Interceptors()...)
	healthpb.RegisterHealthServer(g, health.NewServer())
	m.InitGRPC(g)
	if _, err := meshkvhealth.New(meshkvhealth.Config{Server: healthyServer{}, Registerer: m.Registry()}); err != nil {
		t.Fatal(err)
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}

	name := regexp.MustCompile(`\b(?:etcd|meshkv|grpc|process|go)_[a-z0-9_]+`)
	used := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				switch n {
				case "grpc_service", "grpc_method", "grpc_code", "grpc_type":
					continue // label names
				}
				used++
				base := n
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if b, ok := strings.CutSuffix(n, suffix); ok && have[b] {
						base = b
					}
				}
				if !have[base] {
					t.Errorf("panel %q queries %s, which no node exports", p.Title, n)
				}
			}
		}
	}
	if used < 30 {
		t.Fatalf("found only %d metric names in the dashboard", used)
	}
}
