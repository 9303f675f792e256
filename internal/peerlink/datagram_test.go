package peerlink

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/netproxy"
)

// sendAll sends msgs to peer, waiting while the queue is full.
func sendAll(t *testing.T, n *testNode, peer PublicKey, msgs [][]byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, m := range msgs {
		for !n.Send(peer, m) {
			if time.Now().After(deadline) {
				t.Fatal("send queue stayed full")
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// numbered makes count datagrams "prefix-i" padded to various sizes.
func numbered(prefix string, count int) [][]byte {
	out := make([][]byte, count)
	for i := range out {
		pad := strings.Repeat("x", (i*37)%2000)
		out[i] = []byte(prefix + "-" + strconv.Itoa(i) + "-" + pad)
	}
	return out
}

func TestDatagramsInOrderBothWays(t *testing.T) {
	a, b := newTestNode(t, patient), newTestNode(t, patient)
	connect(t, a, b)
	const count = 20000
	ab, ba := numbered("ab", count), numbered("ba", count)
	var wg sync.WaitGroup
	wg.Go(func() { sendAll(t, a, b.PublicKey(), ab) })
	wg.Go(func() { sendAll(t, b, a.PublicKey(), ba) })
	wg.Wait()
	waitFor(t, 30*time.Second, "all datagrams", func() bool {
		return a.rec.count("dg") == count && b.rec.count("dg") == count
	})
	for name, c := range map[string]struct {
		got  []event
		want [][]byte
	}{"a->b": {b.rec.ofKind("dg"), ab}, "b->a": {a.rec.ofKind("dg"), ba}} {
		for i, e := range c.got {
			if !bytes.Equal(e.data, c.want[i]) {
				t.Fatalf("%s: datagram %d is %.20q, want %.20q", name, i, e.data, c.want[i])
			}
		}
	}
	// Everything acknowledged: nothing stays in flight.
	waitFor(t, 5*time.Second, "acks drained", func() bool {
		return a.Links()[0].InFlight == 0 && b.Links()[0].InFlight == 0
	})
}

func TestAcksAreCoalesced(t *testing.T) {
	a, b := newTestNode(t, patient), newTestNode(t, patient)
	connect(t, a, b)
	const count = 4000
	sendAll(t, a, b.PublicKey(), numbered("one-way", count))
	waitFor(t, 10*time.Second, "delivery and acks", func() bool {
		return b.rec.count("dg") == count && a.Links()[0].InFlight == 0
	})
	acks := b.currentLink(a.PublicKey()).acksSent.Load()
	t.Logf("%d datagrams one way, %d standalone ACK records", count, acks)
	if acks == 0 || acks > count/ackEvery+200 {
		t.Fatalf("%d ACK records for %d datagrams", acks, count)
	}
}

func TestSendRefusals(t *testing.T) {
	a, b := newTestNode(t, func(c *Config) { c.MaxDatagram = 4096 }), newTestNode(t)
	stranger, _ := NewIdentity()
	if a.Send(stranger.PublicKey(), []byte("x")) {
		t.Fatal("send to an unknown peer succeeded")
	}
	connect(t, a, b)
	if a.Send(b.PublicKey(), make([]byte, 4097)) {
		t.Fatal("datagram above our MaxDatagram accepted")
	}
	if !a.Send(b.PublicKey(), make([]byte, 4096)) {
		t.Fatal("datagram of MaxDatagram refused")
	}
	// b's limit is larger; a's own limit applies to what b sends too, since
	// a announced it.
	if b.Send(a.PublicKey(), make([]byte, 4097)) {
		t.Fatal("b sent more than a accepts")
	}
	if a.Stats().DatagramsRefused != 2 {
		t.Errorf("refused = %d, want 2", a.Stats().DatagramsRefused)
	}
}

// proxied connects a to b through a netproxy and returns the proxy.
func proxied(t *testing.T, a, b *testNode) *netproxy.Proxy {
	t.Helper()
	p, err := netproxy.New("127.0.0.1:0", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if err := a.SetTargets([]string{p.Addr()}); err != nil {
		t.Fatal(err)
	}
	linked(t, a, b)
	return p
}

// checkHandBack verifies that what b received is a prefix of sent, in
// order and without repeats, and that what a got back is the rest (possibly
// overlapping the received prefix by unacknowledged datagrams).
func checkHandBack(t *testing.T, sent [][]byte, received []event, returned [][]byte) {
	t.Helper()
	for i, e := range received {
		if !bytes.Equal(e.data, sent[i]) {
			t.Fatalf("received datagram %d is %.20q, want %.20q", i, e.data, sent[i])
		}
	}
	if len(received)+len(returned) < len(sent) {
		t.Fatalf("lost datagrams: %d sent, %d received, %d returned", len(sent), len(received), len(returned))
	}
	first := len(sent) - len(returned)
	if first < 0 || first > len(received) {
		t.Fatalf("returned %d of %d with %d received: not a suffix after a delivered prefix", len(returned), len(sent), len(received))
	}
	for i, d := range returned {
		if !bytes.Equal(d, sent[first+i]) {
			t.Fatalf("returned datagram %d is %.20q, want %.20q", i, d, sent[first+i])
		}
	}
	t.Logf("sent %d, received %d, returned %d (overlap %d: delivered but not acknowledged)",
		len(sent), len(received), len(returned), len(received)-first)
}

func TestHandBackWhenConnectionKilled(t *testing.T) {
	a, b := newTestNode(t), newTestNode(t)
	connect(t, a, b)
	sent := numbered("killed", 3000)
	l := a.currentLink(b.PublicKey())
	var accepted [][]byte
	for i, m := range sent {
		if i == 1500 {
			_ = l.conn.Close() // the TCP connection dies under the link
		}
		if a.Send(b.PublicKey(), m) {
			accepted = append(accepted, m)
		}
	}
	waitFor(t, 5*time.Second, "link down at a", func() bool { return a.rec.count("down") == 1 })
	downs := a.rec.ofKind("down")
	if !errors.Is(downs[0].reason, ErrConnLost) {
		t.Errorf("reason %v, want ErrConnLost", downs[0].reason)
	}
	waitFor(t, 5*time.Second, "link down at b", func() bool { return b.rec.count("down") >= 1 })
	// a redials b (its target); nothing is sent again, so b's datagrams
	// are exactly what the dead link delivered.
	checkHandBack(t, accepted, b.rec.ofKind("dg"), downs[0].undelivered)
	if got := a.Stats().DatagramsReturned; got != uint64(len(downs[0].undelivered)) {
		t.Errorf("stats returned %d, handed back %d", got, len(downs[0].undelivered))
	}
}

func TestHandBackWhenPathStalls(t *testing.T) {
	a, b := newTestNode(t), newTestNode(t)
	p := proxied(t, a, b)
	sent := numbered("stalled", 4000)
	sendAll(t, a, b.PublicKey(), sent[:1000])
	waitFor(t, 10*time.Second, "first thousand", func() bool { return b.rec.count("dg") == 1000 })
	if err := p.Cut(netproxy.Stall); err != nil {
		t.Fatal(err)
	}
	var accepted [][]byte
	accepted = append(accepted, sent[:1000]...)
	for _, m := range sent[1000:] {
		if a.Send(b.PublicKey(), m) {
			accepted = append(accepted, m)
		}
	}
	start := time.Now()
	waitFor(t, 10*time.Second, "dead verdict at a", func() bool { return a.rec.count("down") == 1 })
	t.Logf("declared dead %v after the stall began", time.Since(start).Round(time.Millisecond))
	down := a.rec.ofKind("down")[0]
	if !errors.Is(down.reason, ErrDead) {
		t.Errorf("reason %v, want ErrDead", down.reason)
	}
	waitFor(t, 10*time.Second, "dead verdict at b", func() bool { return b.rec.count("down") == 1 })
	checkHandBack(t, accepted, b.rec.ofKind("dg"), down.undelivered)
	if len(down.undelivered) == 0 {
		t.Error("nothing handed back although the path stalled mid-flight")
	}
	_ = p.Heal()
	linked(t, a, b)
}

func TestSendFromHandler(t *testing.T) {
	// A handler may Send (an echo server) without deadlock.
	a, b := newTestNode(t), newTestNode(t)
	b.rec.onDatagram = func(peer PublicKey, data []byte) { b.Send(peer, append([]byte("echo:"), data...)) }
	connect(t, a, b)
	for i := range 100 {
		if !a.Send(b.PublicKey(), []byte(fmt.Sprint(i))) {
			t.Fatal("send failed")
		}
	}
	waitFor(t, 10*time.Second, "echoes", func() bool { return a.rec.count("dg") == 100 })
}
