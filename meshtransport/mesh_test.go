//go:build !race

// These tests run real peer links and real mesh routers over loopback. They
// are excluded from -race builds because mesh itself has data races
// (connection.go's `established` flag and Peer.NickName are read and
// written without locks), which the race detector reports in every
// multi-router run. The transport's own logic is race-tested over the
// in-memory network (meshtransporttest).

package meshtransport_test

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/internal/netproxy"
	"github.com/meshkv/meshkv/meshtransport"
)

// realNode starts a transport on a free loopback port.
func realNode(t testing.TB, nick string, cfg meshtransport.Config) *memNode {
	t.Helper()
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	cfg.NickName = nick
	if cfg.ClusterName == "" {
		cfg.ClusterName = "test"
	}
	cfg.Logger = testLogger(t)
	tr, err := meshtransport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	tr.SetHandler(rec)
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return &memNode{tr: tr, rec: rec}
}

// waitReal polls cond on the wall clock.
func waitReal(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not after %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func noDiscovery() *bool { f := false; return &f }

// TestMeshRelayedThroughThirdNode: a and b have no link (no discovery, each
// knows only c); their frames travel sealed through c's mesh router, whose
// connections are spliced over the links.
func TestMeshRelayedThroughThirdNode(t *testing.T) {
	c := realNode(t, "c", meshtransport.Config{PeerDiscovery: noDiscovery()})
	a := realNode(t, "a", meshtransport.Config{PeerDiscovery: noDiscovery(), Peers: []string{c.tr.Addr()}})
	b := realNode(t, "b", meshtransport.Config{PeerDiscovery: noDiscovery(), Peers: []string{c.tr.Addr()}})
	d := waitReal(t, 15*time.Second, "a reaches b relayed", func() bool {
		return pathOf(a, b) == meshtransport.PathRelayed && pathOf(b, a) == meshtransport.PathRelayed
	})
	t.Logf("relayed path after %v", d)
	a.tr.Send([]*raftpb.Message{msg(a.id(), b.id(), 1), msg(a.id(), c.id(), 2)})
	b.tr.Send([]*raftpb.Message{msg(b.id(), a.id(), 3)})
	waitReal(t, 5*time.Second, "delivery", func() bool {
		return b.rec.count(a.id()) == 1 && c.rec.count(a.id()) == 1 && a.rec.count(b.id()) == 1
	})
	sa, sc := a.tr.Stats(), c.tr.Stats()
	if sa.SentRelayed != 1 || sa.SentDirect != 1 {
		t.Errorf("a: relayed %d direct %d, want 1 and 1", sa.SentRelayed, sa.SentDirect)
	}
	if sc.Router.RelayedForOthers == 0 || sc.Router.Connections != 2 {
		t.Errorf("c's router: %+v, want relays and 2 connections", sc.Router)
	}
	if sa.Router.RelayedForOthers != 0 {
		t.Errorf("a's router counts %d relays for others; it relayed none", sa.Router.RelayedForOthers)
	}
}

// TestMeshSilentCutReroutes: a and b are linked through a proxy (and each
// to c); the proxy turns into a blackhole. The link is declared dead within
// peerlink's threshold, the mesh reroutes through c, and raft traffic
// keeps flowing; after the heal the link comes back.
func TestMeshSilentCutReroutes(t *testing.T) {
	for _, mode := range []netproxy.Mode{netproxy.Blackhole, netproxy.BlackholeToTarget, netproxy.Stall} {
		t.Run(mode.String(), func(t *testing.T) {
			c := realNode(t, "c", meshtransport.Config{PeerDiscovery: noDiscovery()})
			b := realNode(t, "b", meshtransport.Config{PeerDiscovery: noDiscovery(), Peers: []string{c.tr.Addr()}})
			proxy, err := netproxy.New("127.0.0.1:0", b.tr.Addr())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = proxy.Close() })
			a := realNode(t, "a", meshtransport.Config{PeerDiscovery: noDiscovery(), Peers: []string{c.tr.Addr(), proxy.Addr()}})
			waitReal(t, 15*time.Second, "a-b direct, mesh up", func() bool {
				return pathOf(a, b) == meshtransport.PathDirect && pathOf(b, a) == meshtransport.PathDirect &&
					a.tr.Stats().Router.Connections == 2
			})
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := uint64(1); ; i++ {
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
					a.tr.Send([]*raftpb.Message{msg(a.id(), b.id(), i)})
				}
			}()
			time.Sleep(200 * time.Millisecond)
			if err := proxy.Cut(mode); err != nil {
				t.Fatal(err)
			}
			cutAt := time.Now()
			before := b.rec.count(a.id())
			d := waitReal(t, 5*time.Second, "traffic flows again after the cut", func() bool { return b.rec.count(a.id()) > before+20 })
			t.Logf("%v: 20 messages through c %v after the cut; path %v", mode, d, pathOf(a, b))
			if pathOf(a, b) != meshtransport.PathRelayed {
				t.Errorf("path %v during the cut, want relayed", pathOf(a, b))
			}
			if err := proxy.Heal(); err != nil {
				t.Fatal(err)
			}
			waitReal(t, 5*time.Second, "direct again", func() bool { return pathOf(a, b) == meshtransport.PathDirect })
			close(stop)
			<-done
			if gap := maxGap(b.rec, a.id(), cutAt.Add(-time.Second)); gap > time.Second {
				t.Errorf("longest gap %v, want at most 1s", gap)
			} else {
				t.Logf("longest gap %v", gap)
			}
		})
	}
}

// maxGap returns the longest gap between arrivals from a raft id since.
func maxGap(r *recorder, from uint64, since time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last time.Time
	var worst time.Duration
	for i, m := range r.msgs {
		if m.GetFrom() != from || r.at[i].Before(since) {
			continue
		}
		if !last.IsZero() {
			worst = max(worst, r.at[i].Sub(last))
		}
		last = r.at[i]
	}
	return worst
}
