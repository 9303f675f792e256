package cluster

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// echoNode stands in for a meshkv node's mesh port: it echoes what it reads
// and counts the bytes.
type echoNode struct {
	ln       net.Listener
	received atomic.Int64
}

func newEchoNode(t *testing.T) *echoNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoNode{ln: ln}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				buf := make([]byte, 1024)
				for {
					n, err := c.Read(buf)
					e.received.Add(int64(n))
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return e
}

// topology is three fake nodes a, b, c with a proxy for every ordered pair.
type topology struct {
	links *links
	nodes map[string]*echoNode
	addr  map[hop]string
}

func newTopology(t *testing.T) *topology {
	t.Helper()
	tp := &topology{links: newLinks(), nodes: map[string]*echoNode{}, addr: map[hop]string{}}
	t.Cleanup(func() {
		if err := tp.links.close(); err != nil {
			t.Errorf("closing proxies: %v", err)
		}
	})
	for _, n := range []string{"a", "b", "c"} {
		tp.nodes[n] = newEchoNode(t)
	}
	for from := range tp.nodes {
		for to, node := range tp.nodes {
			if from == to {
				continue
			}
			addr, err := tp.links.add(from, to, node.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			tp.addr[hop{from, to}] = addr
		}
	}
	return tp
}

// dial opens node from's connection to node to, through proxy(from→to).
func (tp *topology) dial(t *testing.T, from, to string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", tp.addr[hop{from, to}])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func echoes(t *testing.T, c net.Conn) bool {
	t.Helper()
	if _, err := c.Write([]byte("ping")); err != nil {
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4)
	_, err := io.ReadFull(c, buf)
	return err == nil && string(buf) == "ping"
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval
	}
}

func (tp *topology) discarded(from, to string) uint64 {
	tp.links.mu.Lock()
	defer tp.links.mu.Unlock()
	return tp.links.proxies[hop{from, to}].Stats().Discarded
}

func TestResetCutsBothProxiesOfThePair(t *testing.T) {
	tp := newTopology(t)
	ab, ba, ac := tp.dial(t, "a", "b"), tp.dial(t, "b", "a"), tp.dial(t, "a", "c")
	for _, c := range []net.Conn{ab, ba, ac} {
		if !echoes(t, c) {
			t.Fatal("no echo before the cut")
		}
	}
	eventually(t, "a-b connected", func() bool { return tp.links.connected("a", "b") })
	if err := tp.links.cut("a", "b", Reset); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]net.Conn{"a->b": ab, "b->a": ba} {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s read after reset cut = %v, want ECONNRESET", name, err)
		}
	}
	if !echoes(t, ac) {
		t.Error("a->c broken by the a-b cut")
	}
	if tp.links.connected("a", "b") {
		t.Error("a-b reported connected while cut")
	}
	if got := tp.links.cuts(); len(got) != 1 || got[0] != "a-b: reset" {
		t.Errorf("cuts = %q, want [a-b: reset]", got)
	}
	if err := tp.links.heal("b", "a"); err != nil {
		t.Fatal(err)
	}
	if !echoes(t, tp.dial(t, "a", "b")) || !echoes(t, tp.dial(t, "b", "a")) {
		t.Error("no echo after heal")
	}
	if got := tp.links.cuts(); len(got) != 0 {
		t.Errorf("cuts after heal = %q", got)
	}
}

func TestSilentCutDropsWithoutClosing(t *testing.T) {
	tp := newTopology(t)
	ab := tp.dial(t, "a", "b")
	if !echoes(t, ab) {
		t.Fatal("no echo before the cut")
	}
	before := tp.nodes["b"].received.Load()
	if err := tp.links.cut("a", "b", Silent); err != nil {
		t.Fatal(err)
	}
	if _, err := ab.Write([]byte("lost")); err != nil {
		t.Fatalf("write during silent cut failed: %v (the connection must stay open)", err)
	}
	eventually(t, "the bytes to be discarded", func() bool { return tp.discarded("a", "b") >= 4 })
	if got := tp.nodes["b"].received.Load(); got != before {
		t.Errorf("b received %d bytes during a silent cut", got-before)
	}
	if err := tp.links.healAll(); err != nil {
		t.Fatal(err)
	}
	if !echoes(t, ab) {
		t.Error("no echo on the old connection after heal")
	}
}

func TestOneWayCut(t *testing.T) {
	tp := newTopology(t)
	ab, ba := tp.dial(t, "a", "b"), tp.dial(t, "b", "a")
	if !echoes(t, ab) || !echoes(t, ba) {
		t.Fatal("no echo before the cut")
	}
	if err := tp.links.cutOneWay("a", "b"); err != nil {
		t.Fatal(err)
	}
	// On a's own connection (a dialled), what a sends never reaches b.
	bBefore := tp.nodes["b"].received.Load()
	if _, err := ab.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's bytes dropped on proxy(a->b)", func() bool { return tp.discarded("a", "b") >= 1 })
	if got := tp.nodes["b"].received.Load(); got != bBefore {
		t.Errorf("b received %d bytes from a", got-bBefore)
	}
	// On b's connection (b dialled), b's bytes reach a, a's echo is dropped.
	aBefore := tp.nodes["a"].received.Load()
	if _, err := ba.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b's bytes to reach a", func() bool { return tp.nodes["a"].received.Load() > aBefore })
	eventually(t, "a's echo dropped on proxy(b->a)", func() bool { return tp.discarded("b", "a") >= 1 })
	if err := tp.links.heal("a", "b"); err != nil {
		t.Fatal(err)
	}
	if !echoes(t, tp.dial(t, "a", "b")) || !echoes(t, tp.dial(t, "b", "a")) {
		t.Error("no echo after heal")
	}
}

func TestPartitionAndIsolate(t *testing.T) {
	tp := newTopology(t)
	c := &Cluster{fab: &proxyFabric{links: tp.links}, log: slog.New(slog.DiscardHandler), blocked: blockState{}}
	if err := c.Partition(Silent, []string{"a"}, []string{"b", "c"}); err != nil {
		t.Fatal(err)
	}
	if got, want := tp.links.cuts(), []string{"a-b: silent", "a-c: silent"}; !slices.Equal(got, want) {
		t.Errorf("cuts after partition = %q, want %q", got, want)
	}
	if err := c.HealAll(); err != nil {
		t.Fatal(err)
	}
	if err := c.Isolate("c", Reset); err != nil {
		t.Fatal(err)
	}
	if got, want := tp.links.cuts(), []string{"a-c: reset", "b-c: reset"}; !slices.Equal(got, want) {
		t.Errorf("cuts after isolate = %q, want %q", got, want)
	}
	if err := c.Isolate("zz", Reset); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("Isolate(unknown) = %v, want ErrUnknownNode", err)
	}
}

func TestLinkErrors(t *testing.T) {
	tp := newTopology(t)
	if err := tp.links.cut("a", "zz", Reset); !errors.Is(err, ErrNoLink) {
		t.Errorf("cut to an unknown node = %v, want ErrNoLink", err)
	}
	if err := tp.links.cut("a", "a", Reset); !errors.Is(err, ErrNoLink) {
		t.Errorf("cut of a node with itself = %v, want ErrNoLink", err)
	}
	if err := tp.links.cut("a", "b", Cut(42)); !errors.Is(err, ErrUnknownCut) {
		t.Errorf("cut of an unknown kind = %v, want ErrUnknownCut", err)
	}
	if err := tp.links.cutOneWay("a", "zz"); !errors.Is(err, ErrNoLink) {
		t.Errorf("one-way cut to an unknown node = %v, want ErrNoLink", err)
	}
	for _, k := range []Cut{Reset, Silent, Stall} {
		if got, err := ParseCut(k.String()); err != nil || got != k {
			t.Errorf("ParseCut(%q) = %v, %v", k.String(), got, err)
		}
	}
	if _, err := ParseCut("gentle"); !errors.Is(err, ErrUnknownCut) {
		t.Errorf("ParseCut(gentle) = %v, want ErrUnknownCut", err)
	}
}
