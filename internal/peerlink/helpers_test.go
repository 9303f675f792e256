package peerlink

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// testSecret is derived once per test binary (Argon2id is deliberately slow).
var testSecret = sync.OnceValue(func() *ClusterSecret {
	s, err := NewClusterSecret([]byte("a test cluster secret, long enough"))
	if err != nil {
		panic(err)
	}
	return s
})

// otherSecret is a second cluster's secret.
var otherSecret = sync.OnceValue(func() *ClusterSecret {
	s, err := NewClusterSecret([]byte("another cluster's secret, also long"))
	if err != nil {
		panic(err)
	}
	return s
})

// tWriter sends log lines to t.Log and optionally to a capture buffer.
type tWriter struct {
	t   testing.TB
	mu  *sync.Mutex
	buf *strings.Builder
}

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	if w.buf != nil {
		w.mu.Lock()
		w.buf.Write(p)
		w.mu.Unlock()
	}
	return len(p), nil
}

// logCapture is a logger whose output can be searched.
type logCapture struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (c *logCapture) logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t: t, mu: &c.mu, buf: &c.buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (c *logCapture) contains(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Contains(c.buf.String(), s)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// event is one Handler call seen by a recorder.
type event struct {
	kind        string // up, down, dg, stream
	at          time.Time
	peer        PublicKey
	info        PeerInfo
	data        []byte
	reason      error
	undelivered [][]byte
	stream      *Stream
}

// recorder is a Handler that records every call and checks that up and
// down alternate per peer.
type recorder struct {
	mu         sync.Mutex
	events     []event
	up         map[PublicKey]bool
	violations []string
	onDatagram func(peer PublicKey, data []byte) // optional, called outside mu
	onStream   func(peer PublicKey, s *Stream)   // optional; default closes
}

var _ Handler = (*recorder)(nil)

func newRecorder() *recorder { return &recorder{up: make(map[PublicKey]bool)} }

func (r *recorder) OnLinkUp(info PeerInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.up[info.Key] {
		r.violations = append(r.violations, "up twice for "+info.Key.String())
	}
	r.up[info.Key] = true
	r.events = append(r.events, event{at: time.Now(), kind: "up", peer: info.Key, info: info})
}

func (r *recorder) OnDatagram(peer PublicKey, data []byte) {
	r.mu.Lock()
	if !r.up[peer] {
		r.violations = append(r.violations, "datagram while down from "+peer.String())
	}
	r.events = append(r.events, event{at: time.Now(), kind: "dg", peer: peer, data: data})
	f := r.onDatagram
	r.mu.Unlock()
	if f != nil {
		f(peer, data)
	}
}

func (r *recorder) OnStream(peer PublicKey, s *Stream) {
	r.mu.Lock()
	r.events = append(r.events, event{at: time.Now(), kind: "stream", peer: peer, stream: s})
	f := r.onStream
	r.mu.Unlock()
	if f != nil {
		f(peer, s)
	}
}

func (r *recorder) OnLinkDown(peer PublicKey, reason error, undelivered [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.up[peer] {
		r.violations = append(r.violations, "down without up for "+peer.String())
	}
	r.up[peer] = false
	r.events = append(r.events, event{at: time.Now(), kind: "down", peer: peer, reason: reason, undelivered: undelivered})
}

// count returns how many events of kind were recorded.
func (r *recorder) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.kind == kind {
			n++
		}
	}
	return n
}

// ofKind returns a copy of the events of kind.
func (r *recorder) ofKind(kind string) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.events {
		if e.kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) isUp(peer PublicKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up[peer]
}

func (r *recorder) check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		t.Errorf("handler contract violated: %s", v)
	}
}

// testNode is a started Node with its recorder.
type testNode struct {
	*Node
	rec *recorder
}

// newTestNode starts a Node on 127.0.0.1:0 with the test secret and closes
// it at cleanup. mods adjust the config before New.
func newTestNode(t testing.TB, mods ...func(*Config)) *testNode {
	t.Helper()
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg := Config{
		ListenAddr:    "127.0.0.1:0",
		Identity:      id,
		ClusterSecret: testSecret(),
		ClusterName:   "test",
		Handler:       rec,
		Logger:        testLogger(t),
	}
	for _, m := range mods {
		m(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = n.Close()
		rec.check(t)
	})
	return &testNode{Node: n, rec: rec}
}

// patient raises the liveness thresholds for tests that move a lot of data
// and are not about liveness: under -race on a loaded 2-core machine a
// thread of the process can be descheduled for longer than DeadAfter, and
// a dead verdict would break what the test checks.
func patient(c *Config) {
	c.DeadAfter, c.DeadAfterMax = 2*time.Second, 4*time.Second
}

// waitFor polls cond every millisecond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// linked waits until a and b have a link to each other.
func linked(t testing.TB, a, b *testNode) {
	t.Helper()
	waitFor(t, 10*time.Second, "link "+a.PublicKey().String()+"-"+b.PublicKey().String(), func() bool {
		return a.rec.isUp(b.PublicKey()) && b.rec.isUp(a.PublicKey())
	})
}

// connect makes a dial b and waits for the link.
func connect(t testing.TB, a, b *testNode) {
	t.Helper()
	if err := a.SetTargets([]string{b.Addr()}); err != nil {
		t.Fatal(err)
	}
	linked(t, a, b)
}

// currentLink returns n's registered link to peer, or nil.
func (n *Node) currentLink(peer PublicKey) *link {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.links[peer]
}

// dialRaw opens a TCP connection to addr from the given local IP ("" for
// any).
func dialRaw(t testing.TB, localIP, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, localIP, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func dg(i int) []byte { return []byte(fmt.Sprintf("datagram-%06d", i)) }
