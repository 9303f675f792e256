package meshkv_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshkv/meshkv"
)

// httpGet fetches url and returns the status code and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	return httpDo(t, http.MethodGet, url, "")
}

func httpDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// TestClientPortServesHTTPAndGRPC checks that one client listener serves
// gRPC (clientv3, grpc.health.v1) and HTTP (metrics, health, version, the
// JSON gateway) side by side, and that a metrics listener serves metrics
// and health.
func TestClientPortServesHTTPAndGRPC(t *testing.T) {
	n := startNode(t, meshkv.Config{
		ListenClientURLs:  []string{"http://127.0.0.1:0"},
		ListenMetricsURLs: []string{"http://127.0.0.1:0"},
	})
	base := "http://" + n.ClientAddrs()[0]

	cli, err := clientv3.New(clientv3.Config{Endpoints: n.ClientAddrs(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "grpc-key", "v"); err != nil {
		t.Fatalf("Put over gRPC: %v", err)
	}

	// The gateway, with base64 keys and values, as etcd's.
	b64 := base64.StdEncoding.EncodeToString
	code, body := httpDo(t, http.MethodPost, base+"/v3/kv/put", `{"key":"`+b64([]byte("http-key"))+`","value":"`+b64([]byte("hello"))+`"}`)
	if code != http.StatusOK || !strings.Contains(body, `"revision"`) {
		t.Fatalf("gateway put: %d %s", code, body)
	}
	code, body = httpDo(t, http.MethodPost, base+"/v3/kv/range", `{"key":"`+b64([]byte("http-key"))+`"}`)
	var rr struct {
		Kvs []struct{ Key, Value string } `json:"kvs"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &rr) != nil || len(rr.Kvs) != 1 || rr.Kvs[0].Value != b64([]byte("hello")) {
		t.Fatalf("gateway range: %d %s", code, body)
	}
	if got, err := cli.Get(ctx, "http-key"); err != nil || len(got.Kvs) != 1 {
		t.Fatalf("gRPC get of the key put through the gateway: %v %v", got, err)
	}
	// etcd's error shape: gRPC code in JSON, HTTP status from the code.
	code, body = httpDo(t, http.MethodPost, base+"/v3/kv/range", `{}`)
	if code != http.StatusBadRequest || !strings.Contains(body, `"code":3`) || !strings.Contains(body, "key is not provided") {
		t.Fatalf("gateway range without a key: %d %s, want 400 with etcd's message", code, body)
	}
	// The older /v3beta/ prefix is an alias, as in etcd.
	if code, body = httpDo(t, http.MethodPost, base+"/v3beta/kv/range", `{"key":"`+b64([]byte("http-key"))+`"}`); code != http.StatusOK {
		t.Fatalf("/v3beta/kv/range: %d %s", code, body)
	}

	for _, tc := range []struct {
		path, want string
	}{
		{"/health", `{"health":"true","reason":""}`},
		{"/health?serializable=true", `{"health":"true","reason":""}`},
		{"/livez", "ok\n"},
		{"/readyz", "ok\n"},
		{"/readyz/linearizable_read", "ok\n"},
		{"/readyz?verbose&exclude=non_learner", "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nok\n"},
		{"/version", `{"etcdserver":"3.7.0","etcdcluster":"3.7.0","storage":"3.7.0"}`},
	} {
		if code, body := httpGet(t, base+tc.path); code != http.StatusOK || body != tc.want {
			t.Errorf("GET %s = %d %q, want 200 %q", tc.path, code, body, tc.want)
		}
	}
	if code, _ := httpDo(t, http.MethodPost, base+"/health", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /health = %d, want 405", code)
	}

	code, metrics := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	for _, want := range []string{
		"etcd_server_has_leader 1", "etcd_server_is_leader 1", "etcd_server_leader_changes_seen_total 1",
		"etcd_mvcc_put_total 2", "etcd_debugging_mvcc_keys_total 2",
		"etcd_server_quota_backend_bytes 2.147483648e+09", `etcd_server_version{server_version="3.7.0"} 1`,
		"process_resident_memory_bytes ", "go_goroutines ",
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}`,
		"etcd_network_client_grpc_received_bytes_total ", "etcd_server_health_success ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	maddr := "http://" + n.MetricsAddrs()[0]
	if code, body := httpGet(t, maddr+"/metrics"); code != http.StatusOK || !strings.Contains(body, "etcd_server_has_leader 1") {
		t.Errorf("metrics listener /metrics = %d", code)
	}
	if code, body := httpGet(t, maddr+"/health"); code != http.StatusOK || body != `{"health":"true","reason":""}` {
		t.Errorf("metrics listener /health = %d %q", code, body)
	}
	if code, _ := httpDo(t, http.MethodPost, maddr+"/v3/kv/range", "{}"); code != http.StatusNotFound {
		t.Errorf("metrics listener serves the gateway (%d); etcd's serves only metrics and health", code)
	}

	conn, err := grpc.NewClient(n.ClientAddrs()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("grpc.health.v1 Check = %v, %v; want SERVING", hr, err)
	}
}

// TestGatewayRefusesCrossOrigin checks that a browser request from another
// origin cannot reach the gateway, while same-origin and non-browser
// requests can.
func TestGatewayRefusesCrossOrigin(t *testing.T) {
	n := startNode(t, meshkv.Config{ListenClientURLs: []string{"http://127.0.0.1:0"}})
	base := "http://" + n.ClientAddrs()[0]
	for _, tc := range []struct {
		origin string
		want   int
	}{
		{"", http.StatusOK},
		{base, http.StatusOK},
		{"http://evil.example", http.StatusForbidden},
		{"null", http.StatusForbidden},
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/v3/kv/put", strings.NewReader(`{"key":"YQ==","value":"Yg=="}`))
		if err != nil {
			t.Fatal(err)
		}
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Origin %q: status %d, want %d", tc.origin, resp.StatusCode, tc.want)
		}
	}
}

// TestNodesHaveTheirOwnMetrics runs two nodes in one process: each has its
// own registry and counts only its own requests.
func TestNodesHaveTheirOwnMetrics(t *testing.T) {
	a := startNode(t, meshkv.Config{ListenClientURLs: []string{"http://127.0.0.1:0"}})
	b := startNode(t, meshkv.Config{ListenClientURLs: []string{"http://127.0.0.1:0"}})
	for i := range 3 {
		if _, err := a.Client().Put(t.Context(), "k", string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	_, ma := httpGet(t, "http://"+a.ClientAddrs()[0]+"/metrics")
	_, mb := httpGet(t, "http://"+b.ClientAddrs()[0]+"/metrics")
	if !strings.Contains(ma, "etcd_mvcc_put_total 3") || !strings.Contains(mb, "etcd_mvcc_put_total 0") {
		t.Fatalf("put counts: node a %q, node b %q; want 3 and 0", grep(ma, "etcd_mvcc_put_total"), grep(mb, "etcd_mvcc_put_total"))
	}
}

// grep returns the lines of s that contain sub.
func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPprofAndBodyLimit checks --enable-pprof and the bound on gateway
// request bodies.
func TestPprofAndBodyLimit(t *testing.T) {
	off := startNode(t, meshkv.Config{ListenClientURLs: []string{"http://127.0.0.1:0"}})
	if code, _ := httpGet(t, "http://"+off.ClientAddrs()[0]+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("profiler served without EnablePprof: %d", code)
	}
	on := startNode(t, meshkv.Config{ListenClientURLs: []string{"http://127.0.0.1:0"}, EnablePprof: true, MaxRequestBytes: 1024})
	base := "http://" + on.ClientAddrs()[0]
	if code, body := httpGet(t, base+"/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Errorf("profiler with EnablePprof: %d", code)
	}
	// Over the request limit, but under the body bound: etcd's error.
	big := base64.StdEncoding.EncodeToString(make([]byte, 4096))
	code, body := httpDo(t, http.MethodPost, base+"/v3/kv/put", `{"key":"YQ==","value":"`+big+`"}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "request is too large") {
		t.Errorf("put over the request limit: %d %s", code, body)
	}
	// Over the body bound: refused while reading.
	huge := strings.Repeat("A", 4<<20)
	code, body = httpDo(t, http.MethodPost, base+"/v3/kv/put", `{"key":"YQ==","value":"`+huge+`"}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "too large") {
		t.Errorf("put over the body bound: %d %.200s", code, body)
	}
}

// BenchmarkScrape measures what one scrape of a node's /metrics costs the
// node (Prometheus asks for gzip).
func BenchmarkScrape(b *testing.B) {
	n, err := meshkv.Start(b.Context(), meshkv.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	for range 100 {
		if _, err := n.Client().Put(b.Context(), "k", "v"); err != nil {
			b.Fatal(err)
		}
	}
	h := n.MetricsHandler()
	b.ReportAllocs()
	var size int
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(size), "gzip-bytes")
}
