//go:build !race

// These tests run real mesh routers over loopback. They are excluded from
// -race builds because mesh itself has data races (connection.go's
// `established` flag and Peer.NickName are read and written without locks),
// which the race detector reports in every multi-router run. The transport's
// own logic is race-tested over the in-memory network (transport_mem_test.go).

package meshtransport

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/netproxy"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// meshNode starts a real transport on a fresh port with raft id raftID.
func meshNode(t testing.TB, nick string, raftID uint64, cfg Config) (*Transport, *recorder) {
	t.Helper()
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = freeAddr(t)
	}
	cfg.NickName = nick
	cfg.Logger = testLogger(t)
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	tr.SetHandler(rec)
	tr.SetMeta(Meta{RaftID: raftID, Role: "voter"})
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr, rec
}

func noDiscovery() *bool { f := false; return &f }

func newProxy(t *testing.T, target string) *netproxy.Proxy {
	t.Helper()
	p, err := netproxy.New("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestMeshThreeNodes(t *testing.T) {
	a, ra := meshNode(t, "a", 1, Config{})
	b, rb := meshNode(t, "b", 2, Config{Peers: []string{a.Addr()}})
	c, rc := meshNode(t, "c", 3, Config{Peers: []string{a.Addr(), b.Addr()}})
	d := waitFor(t, 15*time.Second, "three nodes connected", func() bool { return connected(a, b, c) })
	t.Logf("connected after %v", d)

	a.Send([]*raftpb.Message{msg(1, 2, 10), msg(1, 3, 11)})
	b.Send([]*raftpb.Message{msg(2, 1, 12), msg(2, 3, 13)})
	c.Send([]*raftpb.Message{msg(3, 1, 14), msg(3, 2, 15)})
	waitFor(t, 5*time.Second, "six messages", func() bool {
		return rb.has(1, 10) && rc.has(1, 11) && ra.has(2, 12) && rc.has(2, 13) && ra.has(3, 14) && rb.has(3, 15)
	})

	// Batching: many messages queued at once travel in few unicasts.
	const count = 3000
	msgs := make([]*raftpb.Message, count)
	for i := range msgs {
		msgs[i] = msg(1, 2, uint64(100+i))
	}
	before := a.Stats()
	rbBefore := rb.stepCount()
	a.Send(msgs)
	waitFor(t, 10*time.Second, "the batch", func() bool { return rb.stepCount()-rbBefore == count })
	st := a.Stats()
	unicasts := st.Unicasts - before.Unicasts - (st.ProbesSent - before.ProbesSent) - (st.ProbeReplies - before.ProbeReplies)
	t.Logf("%d messages in %d raft unicasts", count, unicasts)
	if st.Sent-before.Sent != count || unicasts > 10 {
		t.Errorf("Sent +%d in %d unicasts, want %d in <= 10", st.Sent-before.Sent, unicasts, count)
	}
}

func TestMeshSnapshot(t *testing.T) {
	a, ra := meshNode(t, "a", 1, Config{SnapshotTimeout: 5 * time.Second})
	b, rb := meshNode(t, "b", 2, Config{Peers: []string{a.Addr()}})
	waitFor(t, 15*time.Second, "connected", func() bool { return connected(a, b) })

	data := randomPayload(5<<20, 9)
	a.Send([]*raftpb.Message{snapMsg(1, 2, 2, 50, data)})
	d := waitFor(t, 20*time.Second, "snapshot report", func() bool { _, ok := ra.snapStatus(2); return ok })
	if st, _ := ra.snapStatus(2); st != raft.SnapshotFinish {
		t.Fatalf("ReportSnapshot = %v, want SnapshotFinish", st)
	}
	t.Logf("5 MiB snapshot acknowledged after %v in %d chunks", d, a.Stats().ChunksSent)
	var got []byte
	for _, m := range rb.messages() {
		if m.GetType() == raftpb.MsgSnap {
			got = m.GetSnapshot().GetData()
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatal("snapshot data differs")
	}
	if a.Stats().ChunksSent != 11 {
		t.Errorf("ChunksSent = %d, want 11", a.Stats().ChunksSent)
	}

	// The receiver goes away: the next snapshot fails.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	a.Send([]*raftpb.Message{snapMsg(1, 2, 0, 0, data)})
	waitFor(t, 10*time.Second, "failure report", func() bool {
		ra.mu.Lock()
		defer ra.mu.Unlock()
		return len(ra.snaps) == 2
	})
	if s := ra.snaps[1]; s.status != raft.SnapshotFailure {
		t.Fatalf("second ReportSnapshot = %v, want SnapshotFailure", s.status)
	}
}

func TestMeshLineTopology(t *testing.T) {
	// a - b - c with discovery off: a and c have no direct connection, mesh
	// relays through b.
	b, rb := meshNode(t, "b", 2, Config{PeerDiscovery: noDiscovery()})
	a, ra := meshNode(t, "a", 1, Config{PeerDiscovery: noDiscovery(), Peers: []string{b.Addr()}})
	c, rc := meshNode(t, "c", 3, Config{PeerDiscovery: noDiscovery(), Peers: []string{b.Addr()}})
	waitFor(t, 15*time.Second, "line connected", func() bool { return connected(a, b, c) })
	if _, direct := a.router.Ourself.ConnectionTo(c.name); direct {
		t.Fatal("a has a direct connection to c; the line topology is broken")
	}
	a.Send([]*raftpb.Message{msg(1, 3, 1), msg(1, 2, 2)})
	c.Send([]*raftpb.Message{msg(3, 1, 3)})
	waitFor(t, 5*time.Second, "messages across the line", func() bool {
		return rc.has(1, 1) && rb.has(1, 2) && ra.has(3, 3)
	})
	if b.Stats().Relayed != 0 {
		t.Errorf("b relayed %d frames at our layer; mesh should route", b.Stats().Relayed)
	}
}

// traffic sends a numbered message src->dst every 10ms and records when
// each index was sent.
type traffic struct {
	mu     sync.Mutex
	sentAt map[uint64]time.Time
	next   uint64
	stopc  chan struct{}
	wg     sync.WaitGroup
}

func startTraffic(t *testing.T, src *Transport, from, to uint64) *traffic {
	t.Helper()
	tr := &traffic{sentAt: make(map[uint64]time.Time), next: 1, stopc: make(chan struct{})}
	tr.wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tr.stopc:
				return
			case now := <-tick.C:
				tr.mu.Lock()
				idx := tr.next
				tr.next++
				tr.sentAt[idx] = now
				tr.mu.Unlock()
				src.Send([]*raftpb.Message{msg(from, to, idx)})
			}
		}
	})
	t.Cleanup(tr.stop)
	return tr
}

func (tr *traffic) stop() {
	select {
	case <-tr.stopc:
	default:
		close(tr.stopc)
	}
	tr.wg.Wait()
}

// lastIndex is the index of the newest message sent.
func (tr *traffic) lastIndex() uint64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.next - 1
}

// arrivedAfter reports whether any message numbered above idx arrived.
func arrivedAfter(r *recorder, from, idx uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.steps {
		if m.GetFrom() == from && m.GetIndex() > idx {
			return true
		}
	}
	return false
}

func TestMeshTriangleCut(t *testing.T) {
	for _, mode := range []netproxy.Mode{netproxy.Blackhole, netproxy.Reset, netproxy.Stall} {
		t.Run(mode.String(), func(t *testing.T) {
			// a-b, b-c direct; a-c through a proxy that we cut.
			off := noDiscovery()
			cAddr := freeAddr(t)
			proxy := newProxy(t, cAddr)
			c, rc := meshNode(t, "c", 3, Config{ListenAddr: cAddr, PeerDiscovery: off})
			b, _ := meshNode(t, "b", 2, Config{PeerDiscovery: off, Peers: []string{c.Addr()}})
			a, ra := meshNode(t, "a", 1, Config{PeerDiscovery: off, Peers: []string{b.Addr(), proxy.Addr()}})
			waitFor(t, 15*time.Second, "triangle connected", func() bool {
				_, direct := a.router.Ourself.ConnectionTo(c.name)
				return direct && connected(a, b, c)
			})

			ac := startTraffic(t, a, 1, 3)
			ca := startTraffic(t, c, 3, 1)
			waitFor(t, 5*time.Second, "traffic flowing", func() bool {
				return arrivedAfter(rc, 1, 0) && arrivedAfter(ra, 3, 0)
			})

			if err := proxy.Cut(mode); err != nil {
				t.Fatal(err)
			}
			cutAt := time.Now()
			lastAC, lastCA := ac.lastIndex(), ca.lastIndex()
			gapAC := waitFor(t, 10*time.Second, "a->c after the cut", func() bool { return arrivedAfter(rc, 1, lastAC) })
			waitFor(t, 10*time.Second, "c->a after the cut", func() bool { return arrivedAfter(ra, 3, lastCA) })
			gapCA := time.Since(cutAt)
			p, _ := peerOf(a, c)
			t.Logf("%s: a->c resumed %v after the cut, c->a by %v (probe interval %v x %d); a sees c %+v; a detoured %d, b relayed %d",
				mode, gapAC.Round(time.Millisecond), gapCA.Round(time.Millisecond), DefaultProbeInterval, DefaultProbeFailures,
				struct {
					Live bool
					Via  string
				}{p.Live, p.Via}, a.Stats().Detoured, b.Stats().Relayed)
			if gapAC > 2*time.Second || gapCA > 2*time.Second {
				t.Errorf("traffic resumed after %v / %v, want about 1s", gapAC, gapCA)
			}
			if mode != netproxy.Reset && (a.Stats().Detoured == 0 || b.Stats().Relayed == 0) {
				t.Errorf("silent cut: a detoured %d, b relayed %d; want both > 0", a.Stats().Detoured, b.Stats().Relayed)
			}

			// Healing brings back a direct (mesh-routed) path, without our detour.
			if err := proxy.Heal(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 20*time.Second, "c live without detour", func() bool { p, _ := peerOf(a, c); return p.Live && p.Via == "" })
			ac.stop()
			ca.stop()
		})
	}
}

func TestMeshWrongPassword(t *testing.T) {
	a, _ := meshNode(t, "a", 1, Config{Password: []byte("right password")})
	proxy := newProxy(t, a.Addr())
	c, rc := meshNode(t, "c", 3, Config{Password: []byte("right password"), Peers: []string{a.Addr()}})
	b, _ := meshNode(t, "b", 2, Config{Password: []byte("wrong password"), Peers: []string{proxy.Addr()}})
	waitFor(t, 15*time.Second, "a and c connected", func() bool { return connected(a, c) })
	a.Send([]*raftpb.Message{msg(1, 3, 1)})
	waitFor(t, 5*time.Second, "a->c", func() bool { return rc.has(1, 1) })
	// Wait until b's attempt reached a and was refused.
	waitFor(t, 15*time.Second, "b's handshake attempt to end", func() bool {
		st := proxy.Stats()
		return st.Closed >= 1 && st.Forwarded > 0
	})
	if _, ok := peerOf(a, b); ok {
		t.Error("a lists the peer with the wrong password")
	}
	if _, ok := peerOf(b, a); ok {
		t.Error("b lists a")
	}
	b.Send([]*raftpb.Message{msg(2, 1, 5)})
	if (*b.byRaft.Load())[1] != nil {
		t.Error("b resolved a's raft id")
	}
}

func TestMeshEncryptionOnWire(t *testing.T) {
	const marker = "MARKER-plaintext-7f3a9c"
	for _, tc := range []struct {
		name     string
		password []byte
		visible  bool
	}{
		{"encrypted", []byte("a long shared secret"), false},
		{"plaintext", nil, true}, // proves the sniffer would see it
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, ra := meshNode(t, "a", 1, Config{Password: tc.password})
			proxy := newProxy(t, a.Addr())
			var mu sync.Mutex
			var wire []byte
			proxy.Tap(func(_ netproxy.Direction, b []byte) {
				mu.Lock()
				wire = append(wire, b...)
				mu.Unlock()
			})
			b, rb := meshNode(t, "b", 2, Config{Password: tc.password, Peers: []string{proxy.Addr()}, PeerDiscovery: noDiscovery()})
			waitFor(t, 15*time.Second, "connected", func() bool { return connected(a, b) })
			m := msg(2, 1, 1)
			m.Entries[0].Data = []byte(marker)
			b.Send([]*raftpb.Message{m})
			back := msg(1, 2, 2)
			back.Entries[0].Data = []byte(marker)
			a.Send([]*raftpb.Message{back})
			waitFor(t, 5*time.Second, "both messages", func() bool { return ra.has(2, 1) && rb.has(1, 2) })
			mu.Lock()
			seen := bytes.Contains(wire, []byte(marker))
			n := len(wire)
			mu.Unlock()
			if seen != tc.visible {
				t.Fatalf("marker visible on the wire = %v after %d bytes, want %v", seen, n, tc.visible)
			}
		})
	}
}

func TestMeshForeignCluster(t *testing.T) {
	a, _ := meshNode(t, "a", 1, Config{})
	b, rb := meshNode(t, "b", 2, Config{Peers: []string{a.Addr()}})
	waitFor(t, 15*time.Second, "connected", func() bool { return connected(a, b) })
	a.SetClusterID(0xA)
	b.SetClusterID(0xB)
	a.Send([]*raftpb.Message{msg(1, 2, 1)})
	waitFor(t, 5*time.Second, "foreign drop", func() bool { return b.Stats().ForeignCluster > 0 })
	b.SetClusterID(0xA)
	a.Send([]*raftpb.Message{msg(1, 2, 2)})
	waitFor(t, 5*time.Second, "same cluster message", func() bool { return rb.has(1, 2) })
	if rb.has(1, 1) {
		t.Fatal("the foreign message was delivered")
	}
}

// BenchmarkMeshSendBatches64 sends batches of 64 small raft messages between
// two real mesh routers over loopback and waits for each batch to arrive.
func BenchmarkMeshSendBatches64(b *testing.B) {
	mk := func(id uint64, peers []string) *Transport {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		tr, err := New(Config{ListenAddr: addr, Peers: peers})
		if err != nil {
			b.Fatal(err)
		}
		tr.SetMeta(Meta{RaftID: id})
		if err := tr.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	a := mk(1, nil)
	bt := mk(2, []string{a.Addr()})
	h := &countingHandler{c: make(chan struct{}, 1)}
	bt.SetHandler(h)
	deadline := time.Now().Add(15 * time.Second)
	for !connected(a, bt) {
		if time.Now().After(deadline) {
			b.Fatal("peers never connected")
		}
		time.Sleep(time.Millisecond)
	}
	batch := make([]*raftpb.Message, 64)
	for i := range batch {
		batch[i] = msg(1, 2, uint64(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		h.want.Add(64)
		a.Send(batch)
		for h.got.Load() < h.want.Load() {
			select {
			case <-h.c:
			case <-time.After(5 * time.Second):
				b.Fatalf("batch lost: got %d of %d; sender %+v", h.got.Load(), h.want.Load(), a.Stats())
			}
		}
	}
	b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "msgs/s")
}

// TestMeshDiscoveryOtherPorts: b and c know only a, and all three listen on
// different ports. Mesh's own discovery would dial c on b's port; the
// gossiped addresses connect b and c directly, so a carries none of their
// traffic.
func TestMeshDiscoveryOtherPorts(t *testing.T) {
	a, _ := meshNode(t, "a", 1, Config{})
	b, _ := meshNode(t, "b", 2, Config{Peers: []string{a.Addr()}})
	c, rc := meshNode(t, "c", 3, Config{Peers: []string{a.Addr()}})
	waitFor(t, 15*time.Second, "b and c connected directly", func() bool {
		return b.net.direct(c.name) && c.net.direct(b.name) && connected(a, b, c)
	})
	b.Send([]*raftpb.Message{msg(2, 3, 7)})
	waitFor(t, 5*time.Second, "b's message at c", func() bool { return rc.has(2, 7) })
}
