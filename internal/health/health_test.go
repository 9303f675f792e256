package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"
)

// fake is a member whose state the test sets.
type fake struct {
	mu        sync.Mutex
	alarms    []pb.AlarmType
	leader    bool
	learner   bool
	linearErr error // what a linearizable read returns
}

func (f *fake) Alarms() []pb.AlarmType { f.mu.Lock(); defer f.mu.Unlock(); return f.alarms }
func (f *fake) HasLeader() bool        { f.mu.Lock(); defer f.mu.Unlock(); return f.leader }
func (f *fake) IsLearner() bool        { f.mu.Lock(); defer f.mu.Unlock(); return f.learner }
func (f *fake) Read(_ context.Context, serializable bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if serializable {
		return nil
	}
	return f.linearErr
}

func (f *fake) set(fn func(*fake)) { f.mu.Lock(); fn(f); f.mu.Unlock() }

func newChecker(t *testing.T, f *fake) (*Checker, *http.ServeMux, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(Config{Server: f, Registerer: reg, Versions: Versions{"3.7.0", "3.7.0", "3.7.0"}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	c.Register(mux)
	c.RegisterVersion(mux)
	return c, mux, reg
}

func get(mux http.Handler, method, target string) (int, string) {
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Code, rec.Body.String()
}

func TestHealthEndpoint(t *testing.T) {
	f := &fake{leader: true}
	_, mux, reg := newChecker(t, f)
	for _, tc := range []struct {
		name   string
		set    func(*fake)
		target string
		code   int
		body   string
	}{
		{"healthy", func(*fake) {}, "/health", 200, `{"health":"true","reason":""}`},
		{"no leader", func(f *fake) { f.leader = false; f.linearErr = errors.New("etcdserver: no leader") },
			"/health", 503, `{"health":"false","reason":"RAFT NO LEADER"}` + "\n"},
		{"no leader, serializable", nil, "/health?serializable=true", 200, `{"health":"true","reason":""}`},
		{"read fails", func(f *fake) { f.leader = true; f.linearErr = errors.New("etcdserver: request timed out") },
			"/health", 503, `{"health":"false","reason":"RANGE ERROR:etcdserver: request timed out"}` + "\n"},
		{"nospace", func(f *fake) { f.linearErr = nil; f.alarms = []pb.AlarmType{pb.AlarmType_NOSPACE} },
			"/health", 503, `{"health":"false","reason":"ALARM NOSPACE"}` + "\n"},
		{"nospace excluded", nil, "/health?exclude=NOSPACE", 200, `{"health":"true","reason":""}`},
		{"corrupt", func(f *fake) { f.alarms = []pb.AlarmType{pb.AlarmType_CORRUPT} },
			"/health?exclude=NOSPACE", 503, `{"health":"false","reason":"ALARM CORRUPT"}` + "\n"},
	} {
		if tc.set != nil {
			f.set(tc.set)
		}
		if code, body := get(mux, "GET", tc.target); code != tc.code || body != tc.body {
			t.Errorf("%s: GET %s = %d %q, want %d %q", tc.name, tc.target, code, body, tc.code, tc.body)
		}
	}
	if code, _ := get(mux, "POST", "/health"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /health = %d, want 405", code)
	}
	mfs, _ := reg.Gather()
	counts := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			counts[mf.GetName()] += m.GetCounter().GetValue()
		}
	}
	if counts["etcd_server_health_success"] != 3 || counts["etcd_server_health_failures"] != 4 {
		t.Errorf("health counters %v, want 3 successes and 4 failures", counts)
	}
}

func TestLivezReadyz(t *testing.T) {
	f := &fake{leader: true}
	_, mux, _ := newChecker(t, f)
	for _, tc := range []struct {
		target string
		code   int
		body   string
	}{
		{"/livez", 200, "ok\n"},
		{"/livez?verbose", 200, "[+]serializable_read ok\nok\n"},
		{"/readyz", 200, "ok\n"},
		{"/readyz?verbose", 200, "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"},
		{"/readyz/non_learner", 200, "ok\n"},
		{"/readyz/no_such_check", 404, "404 page not found\n"},
	} {
		if code, body := get(mux, "GET", tc.target); code != tc.code || body != tc.body {
			t.Errorf("GET %s = %d %q, want %d %q", tc.target, code, body, tc.code, tc.body)
		}
	}
	f.set(func(f *fake) { f.learner = true; f.linearErr = errors.New("etcdserver: no leader") })
	fail := "[+]data_corruption ok\n[+]serializable_read ok\n[-]linearizable_read failed: etcdserver: no leader\n[-]non_learner failed: not supported for learner\n"
	for _, tc := range []struct {
		target string
		code   int
		body   string
	}{
		{"/readyz", 503, fail + "\n"},
		{"/readyz?verbose", 503, fail + "\n"},
		{"/readyz?exclude=linearizable_read&exclude=non_learner&exclude=bogus", 200, "ok\n"},
		{"/readyz/linearizable_read", 503, "[-]linearizable_read failed: etcdserver: no leader\n\n"},
		{"/livez", 200, "ok\n"},
	} {
		if code, body := get(mux, "GET", tc.target); code != tc.code || body != tc.body {
			t.Errorf("GET %s = %d %q, want %d %q", tc.target, code, body, tc.code, tc.body)
		}
	}
	if code, body := get(mux, "GET", "/version"); code != 200 || body != `{"etcdserver":"3.7.0","etcdcluster":"3.7.0","storage":"3.7.0"}` {
		t.Errorf("/version = %d %q", code, body)
	}
}

// TestGRPCHealthFollowsLeader checks that grpc.health.v1 reports SERVING
// only while the member has a leader, to Check and to Watch.
func TestGRPCHealthFollowsLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fake{}
		c, err := New(Config{Server: f, Poll: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		lis := bufconn.Listen(1 << 16)
		s := grpc.NewServer()
		healthpb.RegisterHealthServer(s, c.GRPC())
		go s.Serve(lis)
		defer s.Stop()
		conn, err := grpc.NewClient("passthrough:///health", grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		hc := healthpb.NewHealthClient(conn)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		runDone := make(chan struct{})
		go func() { defer close(runDone); c.Run(ctx) }()

		check := func() healthpb.HealthCheckResponse_ServingStatus {
			r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			return r.Status
		}
		if st := check(); st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("without a leader: %v", st)
		}
		w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		next := func() healthpb.HealthCheckResponse_ServingStatus {
			r, err := w.Recv()
			if err != nil {
				t.Fatal(err)
			}
			return r.Status
		}
		if st := next(); st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("watch, first: %v", st)
		}
		f.set(func(f *fake) { f.leader = true })
		time.Sleep(150 * time.Millisecond)
		if st := next(); st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("watch after a leader appeared: %v", st)
		}
		if st := check(); st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("check with a leader: %v", st)
		}
		f.set(func(f *fake) { f.leader = false })
		time.Sleep(150 * time.Millisecond)
		if st := next(); st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("watch after the leader was lost: %v", st)
		}
		cancel()
		<-runDone
	})
}
