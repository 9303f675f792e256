package serve

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"

	"github.com/meshkv/meshkv/internal/metrics"
)

type fakeAPI struct{}

func (fakeAPI) ServerOptions() []grpc.ServerOption { return nil }
func (fakeAPI) Register(*grpc.Server)              {}
func (fakeAPI) MaxRequestBytes() int               { return 1 << 20 }

type fakeNode struct{}

func (fakeNode) ServerStats() metrics.ServerStats {
	return metrics.ServerStats{MemberID: 1, HasLeader: true}
}
func (fakeNode) Alarms() []pb.AlarmType           { return nil }
func (fakeNode) HasLeader() bool                  { return true }
func (fakeNode) IsLearner() bool                  { return false }
func (fakeNode) Read(context.Context, bool) error { return nil }

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got status %d, want 200", url, resp.StatusCode)
	}
	return string(body)
}

func TestStartServeClose(t *testing.T) {
	ls, served, err := OpenClientListeners([]string{"http://127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || len(served) != 1 || !strings.HasPrefix(served[0], "http://127.0.0.1:") {
		t.Fatalf("got listeners %v serving %v, want one on http://127.0.0.1", ls, served)
	}
	inproc := bufconn.Listen(1 << 20)
	t.Cleanup(func() { _ = inproc.Close() })
	s, err := Start(Config{
		API: fakeAPI{}, Inproc: inproc, Listeners: ls,
		MetricsURLs: []string{"http://127.0.0.1:0"}, MetricsLevel: "basic",
		Stats: fakeNode{}, Health: fakeNode{}, MemberID: 1, Version: "test",
		CheckTimeout: time.Second, Poll: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	addrs := s.MetricsAddrs()
	if len(addrs) != 1 {
		t.Fatalf("metrics addrs: got %v, want one", addrs)
	}
	for _, base := range []string{served[0], "http://" + addrs[0]} {
		if body := get(t, base+"/metrics"); !strings.Contains(body, "etcd_server_has_leader") {
			t.Errorf("%s/metrics lacks etcd_server_has_leader:\n%.300s", base, body)
		}
	}
	s.Close()
	s.Close() // idempotent
	for _, a := range []string{ls[0].Addr().String(), addrs[0]} {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			_ = c.Close()
			t.Errorf("%s still accepts after Close", a)
		}
	}
}

func TestOpenClientListenersBadURL(t *testing.T) {
	if ls, _, err := OpenClientListeners([]string{"ftp://127.0.0.1:0"}); err == nil {
		for _, l := range ls {
			_ = l.Close()
		}
		t.Fatal("got no error for an ftp:// client URL")
	}
}

func TestMetricsPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = taken.Close() })
	_, err = Start(Config{API: fakeAPI{}, Inproc: bufconn.Listen(1 << 10),
		MetricsURLs: []string{"http://" + taken.Addr().String()}, Stats: fakeNode{}, Health: fakeNode{}})
	if err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Fatalf("got %v, want a listen error", err)
	}
}
