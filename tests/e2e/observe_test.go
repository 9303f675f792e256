package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/connectivity"
)

// httpResult is one HTTP answer.
type httpResult struct {
	code int
	body string
}

// request sends an HTTP request to a server's client URL.
func (s *server) request(t *testing.T, method, path, body string) httpResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.clientURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s %s: %v", s.kind, method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s %s: %v", s.kind, method, path, err)
	}
	return httpResult{resp.StatusCode, string(b)}
}

// TestHTTPHealthLikeEtcd compares /health, /livez, /readyz and /version, and
// checks that /metrics has etcd's metrics with etcd's types.
func TestHTTPHealthLikeEtcd(t *testing.T) {
	t.Parallel()
	etcd, mkv := startPair(t)
	for _, c := range []struct{ method, path string }{
		{"GET", "/health"},
		{"GET", "/health?serializable=true"},
		{"GET", "/health?exclude=NOSPACE"},
		{"POST", "/health"},
		{"GET", "/livez"},
		{"GET", "/livez?verbose"},
		{"GET", "/livez/serializable_read"},
		{"GET", "/readyz"},
		{"GET", "/readyz/linearizable_read"},
		{"GET", "/readyz/non_learner"},
		{"GET", "/readyz?exclude=linearizable_read&exclude=no_such_check"},
		{"PUT", "/readyz"},
		{"GET", "/readyz/no_such_check"},
		{"POST", "/version"},
	} {
		a, b := etcd.request(t, c.method, c.path, ""), mkv.request(t, c.method, c.path, "")
		if a != b {
			t.Errorf("%s %s:\n etcd   %d %q\n meshkv %d %q", c.method, c.path, a.code, a.body, b.code, b.body)
		}
	}
	// etcd lists the checks in map order: compare them as sets.
	a, b := etcd.request(t, "GET", "/readyz?verbose", ""), mkv.request(t, "GET", "/readyz?verbose", "")
	if a.code != b.code || !slices.Equal(sortedLines(a.body), sortedLines(b.body)) {
		t.Errorf("GET /readyz?verbose:\n etcd   %d %q\n meshkv %d %q", a.code, a.body, b.code, b.body)
	}
	var ve, vm map[string]string
	a, b = etcd.request(t, "GET", "/version", ""), mkv.request(t, "GET", "/version", "")
	if json.Unmarshal([]byte(a.body), &ve) != nil || json.Unmarshal([]byte(b.body), &vm) != nil ||
		len(ve) != len(vm) || vm["etcdcluster"] != ve["etcdcluster"] || !strings.HasPrefix(vm["etcdserver"], "3.7.") || vm["storage"] == "" {
		t.Errorf("GET /version: etcd %q, meshkv %q", a.body, b.body)
	}

	// Give the counters something to count.
	for _, s := range []*server{etcd, mkv} {
		s.ctl(t, "", "put", "k", "v")
		s.ctl(t, "", "get", "k")
	}
	types := func(s *server) map[string]string {
		r := s.request(t, "GET", "/metrics", "")
		if r.code != http.StatusOK {
			t.Fatalf("%s /metrics: %d", s.kind, r.code)
		}
		out := map[string]string{}
		for _, l := range strings.Split(r.body, "\n") {
			if f := strings.Fields(l); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
				out[f[2]] = f[3]
			}
		}
		return out
	}
	et, mt := types(etcd), types(mkv)
	for _, name := range []string{
		"etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_leader_changes_seen_total",
		"etcd_server_proposals_committed_total", "etcd_server_proposals_applied_total", "etcd_server_proposals_pending",
		"etcd_server_proposals_failed_total", "etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes",
		"etcd_server_quota_backend_bytes", "etcd_debugging_mvcc_keys_total", "etcd_mvcc_put_total", "etcd_mvcc_range_total",
		"etcd_mvcc_delete_total", "etcd_mvcc_txn_total", "etcd_debugging_mvcc_watch_stream_total", "etcd_debugging_mvcc_watcher_total",
		"etcd_debugging_mvcc_slow_watcher_total", "etcd_debugging_lease_granted_total", "etcd_debugging_lease_revoked_total",
		"etcd_debugging_lease_renewed_total", "etcd_server_id", "etcd_server_version", "etcd_cluster_version", "etcd_server_is_learner",
		"etcd_network_client_grpc_sent_bytes_total", "etcd_network_client_grpc_received_bytes_total",
		"etcd_debugging_mvcc_current_revision", "etcd_debugging_mvcc_compact_revision",
		"grpc_server_started_total", "grpc_server_handled_total", "grpc_server_msg_received_total", "grpc_server_msg_sent_total",
		"process_resident_memory_bytes", "go_goroutines", "etcd_server_health_success", "etcd_server_health_failures",
		"etcd_server_healthcheck", "etcd_server_healthchecks_total",
	} {
		if et[name] == "" {
			t.Errorf("etcd does not export %s: the list is wrong", name)
		} else if mt[name] != et[name] {
			t.Errorf("%s: meshkv's type %q, etcd's %q", name, mt[name], et[name])
		}
	}
}

func sortedLines(s string) []string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(l)
	return l
}

// TestGatewayLikeEtcd sends the same JSON gateway requests to etcd and
// meshkv and compares status codes and bodies (the ids of cluster, member
// and term aside): KV, txn, compaction, leases, lock, election, a watch
// stream, and the errors of bad requests.
func TestGatewayLikeEtcd(t *testing.T) {
	t.Parallel()
	etcd, mkv := startPair(t)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	norm := normJSON(append(serverIDs, "TTL")...)
	steps := []struct{ path, body string }{
		{"/v3/kv/put", `{"key":"` + b64("foo") + `","value":"` + b64("bar") + `"}`},
		{"/v3/kv/put", `{"key":"` + b64("foo/a") + `","value":"` + b64("1") + `","prev_kv":true}`},
		{"/v3/kv/put", `{"key":"` + b64("foo") + `","value":"` + b64("baz") + `","prev_kv":true}`},
		{"/v3/kv/range", `{"key":"` + b64("foo") + `"}`},
		{"/v3/kv/range", `{"key":"` + b64("foo") + `","range_end":"` + b64("fop") + `","keys_only":true}`},
		{"/v3/kv/range", `{"key":"` + b64("foo") + `","range_end":"` + b64("fop") + `","count_only":true}`},
		{"/v3/kv/range", `{"key":"` + b64("foo") + `","revision":"2"}`},
		{"/v3/kv/range", `{"key":"` + b64("missing") + `"}`},
		{"/v3/kv/range", `{}`},
		{"/v3/kv/range", `{"key":"` + b64("foo") + `","revision":100}`},
		{"/v3/kv/range", `{"key":"` + b64("foo") + `","sort_order":9}`},
		{"/v3/kv/range", `{"key":`},
		{"/v3/kv/range", `{"key":"not base64!"}`},
		{"/v3/kv/range", `{"key":"` + b64("foo") + `","no_such_field":1}`},
		{"/v3/kv/txn", `{"compare":[{"key":"` + b64("foo") + `","result":"EQUAL","target":"VALUE","value":"` + b64("baz") + `"}],` +
			`"success":[{"request_put":{"key":"` + b64("foo/t") + `","value":"` + b64("yes") + `"}}],` +
			`"failure":[{"request_range":{"key":"` + b64("foo") + `"}}]}`},
		{"/v3/kv/txn", `{"compare":[{"key":"` + b64("foo") + `","result":"EQUAL","target":"VALUE","value":"` + b64("nope") + `"}],` +
			`"failure":[{"request_range":{"key":"` + b64("foo") + `"}}]}`},
		{"/v3/kv/deleterange", `{"key":"` + b64("foo/a") + `","prev_kv":true}`},
		{"/v3/kv/compaction", `{"revision":"3"}`},
		{"/v3/kv/range", `{"key":"` + b64("foo") + `","revision":"2"}`},
		{"/v3/lease/grant", `{"TTL":60,"ID":4660}`},
		{"/v3/lease/grant", `{"TTL":60,"ID":4660}`},
		{"/v3/kv/put", `{"key":"` + b64("leased") + `","value":"` + b64("v") + `","lease":4660}`},
		{"/v3/lease/timetolive", `{"ID":4660,"keys":true}`},
		{"/v3/kv/lease/timetolive", `{"ID":4660}`},
		{"/v3/lease/leases", `{}`},
		{"/v3/lock/lock", `{"name":"` + b64("mylock") + `","lease":4660}`},
		{"/v3/lock/unlock", `{"key":"` + b64("mylock/1234") + `"}`},
		{"/v3/lock/unlock", `{}`},
		{"/v3/election/campaign", `{"name":"` + b64("elect") + `","lease":4660,"value":"` + b64("me") + `"}`},
		{"/v3/election/leader", `{"name":"` + b64("elect") + `"}`},
		{"/v3/election/proclaim", `{"leader":{leader},"value":"` + b64("me too") + `"}`},
		{"/v3/election/leader", `{"name":"` + b64("elect") + `"}`},
		{"/v3/election/proclaim", `{"leader":{"name":"` + b64("elect") + `","key":"` + b64("elect/9999") + `","rev":"2","lease":4660},"value":"` + b64("not me") + `"}`},
		{"/v3/election/resign", `{"leader":{leader}}`},
		{"/v3/election/leader", `{"name":"` + b64("elect") + `"}`},
		{"/v3/lease/revoke", `{"ID":4660}`},
		{"/v3/kv/lease/revoke", `{"ID":4660}`},
		{"/v3beta/kv/range", `{"key":"` + b64("foo") + `"}`},
		{"/v3/kv/nosuchcall", `{}`},
		{"/v3/", ``},
	}
	leader := map[*server]string{}
	for i, st := range steps {
		body := func(s *server) string { return strings.ReplaceAll(st.body, "{leader}", leader[s]) }
		a, b := etcd.request(t, "POST", st.path, body(etcd)), mkv.request(t, "POST", st.path, body(mkv))
		if st.path == "/v3/election/campaign" {
			for s, r := range map[*server]httpResult{etcd: a, mkv: b} {
				var c struct{ Leader json.RawMessage }
				if err := json.Unmarshal([]byte(r.body), &c); err != nil || len(c.Leader) == 0 {
					t.Fatalf("%s campaign: %d %s", s.kind, r.code, r.body)
				}
				leader[s] = string(c.Leader)
			}
		}
		// protojson varies its whitespace on purpose, in its output and its
		// error messages: compare re-encoded, with plain spaces.
		a.body, b.body = norm(etcd, a.body), norm(mkv, b.body)
		a.body, b.body = strings.ReplaceAll(a.body, "\u00a0", " "), strings.ReplaceAll(b.body, "\u00a0", " ")
		if a != b {
			t.Errorf("step %d: POST %s %s:\n etcd   %d %s\n meshkv %d %s", i, st.path, st.body, a.code, a.body, b.code, b.body)
		}
	}
	for _, c := range []struct{ method, path string }{{"GET", "/v3/kv/range"}, {"PUT", "/v3/kv/put"}} {
		a, b := etcd.request(t, c.method, c.path, ""), mkv.request(t, c.method, c.path, "")
		if a.code != b.code {
			t.Errorf("%s %s: etcd %d %q, meshkv %d %q", c.method, c.path, a.code, a.body, b.code, b.body)
		}
	}
	a, b := etcd.request(t, "POST", "/v3/maintenance/status", "{}"), mkv.request(t, "POST", "/v3/maintenance/status", "{}")
	if a.code != http.StatusOK || b.code != http.StatusOK {
		t.Errorf("maintenance status: etcd %d, meshkv %d %s", a.code, b.code, b.body)
	}
	a, b = etcd.request(t, "POST", "/v3/cluster/member/list", "{}"), mkv.request(t, "POST", "/v3/cluster/member/list", "{}")
	// Members have no peer URLs on meshkv: peers meet over the mesh.
	noPeerURLs := func(p []string) []string {
		return slices.DeleteFunc(p, func(k string) bool { return k == "members[].peerURLs" })
	}
	if a.code != http.StatusOK || b.code != http.StatusOK || !slices.Equal(noPeerURLs(jsonKeyPaths(t, a.body)), noPeerURLs(jsonKeyPaths(t, b.body))) {
		t.Errorf("member list: etcd %d %s\n meshkv %d %s", a.code, a.body, b.code, b.body)
	}

	// A watch over the gateway: created, then one event per put.
	we, wm := gatewayWatch(t, etcd, b64("w")), gatewayWatch(t, mkv, b64("w"))
	for _, s := range []*server{etcd, mkv} {
		s.request(t, "POST", "/v3/kv/put", `{"key":"`+b64("w")+`","value":"`+b64("1")+`"}`)
		s.request(t, "POST", "/v3/kv/put", `{"key":"`+b64("w")+`","value":"`+b64("2")+`"}`)
	}
	for i := range 3 {
		a, b := norm(etcd, we.next(t)), norm(mkv, wm.next(t))
		if a != b {
			t.Errorf("watch message %d:\n etcd   %s\n meshkv %s", i, a, b)
		}
	}
}

// watchStream is a watch through the gateway. As with curl -d, the request
// body is complete (one create request): Go's HTTP/1 server reads a body to
// its end before it answers, etcd's too. The watch stays open after it.
type watchStream struct {
	dec *json.Decoder
}

func gatewayWatch(t *testing.T, s *server, key string) *watchStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, "POST", s.clientURL+"/v3/watch", strings.NewReader(`{"create_request":{"key":"`+key+`"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("%s watch: %v", s.kind, err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return &watchStream{dec: json.NewDecoder(resp.Body)}
}

func (w *watchStream) next(t *testing.T) string {
	t.Helper()
	var m json.RawMessage
	if err := w.dec.Decode(&m); err != nil {
		t.Fatalf("watch: %v", err)
	}
	return string(m)
}

// TestGetStream compares etcdctl get --stream (clientv3's GetStream, etcd
// 3.7's KV.RangeStream) on etcd and meshkv.
func TestGetStream(t *testing.T) {
	t.Parallel()
	etcd, mkv := startPair(t)
	steps := []step{}
	for i := range 40 {
		steps = append(steps, cmd("put", fmt.Sprintf("s/%02d", i), strings.Repeat("x", i*100)))
	}
	ids := normJSON(serverIDs...)
	steps = append(steps,
		cmd("get", "s/", "--prefix", "--stream").expecting("s/39"),
		cmd("get", "s/", "--prefix", "--stream", "--keys-only"),
		cmd("get", "s/", "--prefix", "--stream", "--limit", "15"),
		cmd("get", "s/", "--prefix", "--stream", "--count-only", "-w", "json").with(ids),
		cmd("get", "s/", "--prefix", "--stream", "-w", "json").with(ids),
		cmd("get", "s/", "--prefix", "--stream", "--rev", "10"),
		cmd("get", "s/", "--prefix", "--stream", "--order", "DESCEND"),
		cmd("get", "s/", "--prefix", "--stream", "--consistency", "s"),
		cmd("get", "s/05", "--stream"),
	)
	compareSteps(t, etcd, mkv, steps)
}

// TestCheckDatascale runs etcdctl check datascale, which reads
// process_resident_memory_bytes from /metrics on the client URL.
func TestCheckDatascale(t *testing.T) {
	t.Parallel()
	mkv := startMeshkv(t)
	res := mkv.ctl(t, "", "check", "datascale", "--load", "s", "--auto-compact", "--auto-defrag")
	if res.code != 0 || !regexp.MustCompile(`PASS: Approximate system memory used : -?[0-9.]+ MB`).MatchString(res.stdout) {
		t.Fatalf("check datascale:\n%s", res)
	}
	t.Logf("%s", strings.TrimSpace(res.stdout[strings.LastIndex(res.stdout, "PASS"):]))
}

// TestKeepaliveIdleWatch holds an idle watch for 60 s with a client that
// pings every 10 s, as etcd allows (--grpc-keepalive-min-time 5s): the
// connection must never be told to go away. The control (the server at
// gRPC's own minimum of 5 minutes) shows that the test sees a GOAWAY when
// there is one.
func TestKeepaliveIdleWatch(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		flags  []string
		goaway bool
	}{
		{"default", nil, false},
		{"grpc-default-minimum", []string{"--grpc-keepalive-min-time", "0"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			mkv := startMeshkv(t, c.flags...)
			cli, err := clientv3.New(clientv3.Config{
				Endpoints:            []string{mkv.endpoint},
				DialTimeout:          5 * time.Second,
				DialKeepAliveTime:    10 * time.Second,
				DialKeepAliveTimeout: 5 * time.Second,
				Logger:               zap.NewNop(),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			wc := cli.Watch(clientv3.WithRequireLeader(ctx), "idle")
			if _, err := cli.Put(ctx, "warm", "up"); err != nil {
				t.Fatal(err)
			}
			conn := cli.ActiveConnection()
			left := make(chan connectivity.State, 1)
			go func() {
				for st := conn.GetState(); ; st = conn.GetState() {
					if st != connectivity.Ready {
						left <- st
						return
					}
					if !conn.WaitForStateChange(ctx, st) {
						return
					}
				}
			}()
			select {
			case st := <-left:
				if !c.goaway {
					t.Fatalf("the connection left READY (%v) during the idle watch: the server sent GOAWAY", st)
				}
				t.Logf("control: the connection left READY (%v), as gRPC's 5-minute minimum demands", st)
				return
			case <-time.After(60 * time.Second):
			}
			if c.goaway {
				t.Fatal("control: no GOAWAY within 60 s although the server enforces gRPC's 5-minute minimum: the test cannot see one")
			}
			if _, err := cli.Put(ctx, "idle", "awake"); err != nil {
				t.Fatal(err)
			}
			select {
			case wr := <-wc:
				if err := wr.Err(); err != nil || len(wr.Events) != 1 || string(wr.Events[0].Kv.Value) != "awake" {
					t.Fatalf("watch after 60 idle seconds: %+v %v", wr, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the watch delivered nothing after 60 idle seconds")
			}
		})
	}
}
