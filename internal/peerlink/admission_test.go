package peerlink

import (
	"context"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

func src(t *testing.T, addr string) source {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return sourceOf(a)
}

func TestSourceOf(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"10.0.0.1:1", "10.0.0.1:2"},
		{"10.0.0.1:1", "[::ffff:10.0.0.1]:2"},
		{"[2001:db8:1:2:3::1]:1", "[2001:db8:1:2:ffff::9]:2"},
	} {
		if src(t, tc.a) != src(t, tc.b) {
			t.Errorf("%s and %s are different sources", tc.a, tc.b)
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"10.0.0.1:1", "10.0.0.2:1"},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:3::1]:1"},
	} {
		if src(t, tc.a) == src(t, tc.b) {
			t.Errorf("%s and %s are the same source", tc.a, tc.b)
		}
	}
	if got := src(t, "10.0.0.1:5").String(); got != "10.0.0.1" {
		t.Errorf("String = %q", got)
	}
}

func TestAdmissionLimits(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := newAdmission(4, 20, 40, 64)
	s1 := src(t, "10.0.0.1:1")
	for i := range 4 {
		if r := a.acquire(s1, t0); r != admitted {
			t.Fatalf("handshake %d: %v", i, r)
		}
	}
	if r := a.acquire(s1, t0); r != rejectSource {
		t.Fatalf("fifth concurrent: %v, want rejectSource", r)
	}
	a.release(s1)
	if r := a.acquire(s1, t0); r != admitted {
		t.Fatalf("after a release: %v", r)
	}
	// Every attempt costs a token: 6 spent, 34 left at t0.
	for range 34 {
		a.acquire(s1, t0)
	}
	if r := a.acquire(s1, t0); r != rejectRate {
		t.Fatalf("over the burst: %v, want rejectRate", r)
	}
	for range 4 {
		a.release(s1)
	}
	if r := a.acquire(s1, t0.Add(40*time.Millisecond)); r != rejectRate {
		t.Fatalf("0.8 tokens: %v, want rejectRate", r)
	}
	if r := a.acquire(s1, t0.Add(50*time.Millisecond)); r != admitted {
		t.Fatalf("one token refilled: %v", r)
	}
	a.release(s1)

	// The global cap: 16 sources with 4 each fill it.
	for i := range 16 {
		s := src(t, "10.1.0."+strconv.Itoa(i)+":1")
		for range 4 {
			if r := a.acquire(s, t0); r != admitted {
				t.Fatalf("source %d: %v", i, r)
			}
		}
	}
	if r := a.acquire(src(t, "10.2.0.1:1"), t0); r != rejectGlobal {
		t.Fatalf("over the global cap: %v, want rejectGlobal", r)
	}
	if a.handshakes() != 64 {
		t.Fatalf("in flight = %d", a.handshakes())
	}
	for i := range 16 {
		s := src(t, "10.1.0."+strconv.Itoa(i)+":1")
		for range 4 {
			a.release(s)
		}
	}
	a.prune(t0.Add(time.Minute))
	if len(a.sources) != 0 {
		t.Fatalf("%d sources left after prune", len(a.sources))
	}
}

func TestAdmissionSourceTableBounded(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := newAdmission(4, 20, 40, 1<<20)
	for i := range maxSources + 10 {
		ip := net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))
		a.acquire(sourceOf(&net.TCPAddr{IP: ip, Port: 1}), t0)
	}
	if len(a.sources) > maxSources {
		t.Fatalf("%d sources tracked, bound %d", len(a.sources), maxSources)
	}
}

// flood keeps conns connections from localIP to addr open and silent,
// reconnecting as soon as the server drops one, until ctx ends.
func flood(ctx context.Context, wg *sync.WaitGroup, localIP, addr string, conns int) {
	for range conns {
		wg.Go(func() {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}, Timeout: time.Second}
			for ctx.Err() == nil {
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					time.Sleep(time.Millisecond)
					continue
				}
				stop := context.AfterFunc(ctx, func() { _ = c.Close() })
				_, _ = c.Read(make([]byte, 1)) // until the server gives up on us
				stop()
				_ = c.Close()
			}
		})
	}
}

func TestFloodFromOneSourceDoesNotLockOut(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sources []string
	}{
		{"one source", []string{"127.0.0.2"}},
		{"eight sources", []string{"127.0.0.2", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9", "127.0.0.10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server := newTestNode(t) // default limits and a 3s handshake timeout
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for _, ip := range tc.sources {
				flood(ctx, &wg, ip, server.Addr(), 32)
			}
			t.Cleanup(func() { cancel(); wg.Wait() })
			waitFor(t, 10*time.Second, "flood to fill its slots", func() bool {
				s := server.Stats()
				return s.HandshakesNow >= 4*len(tc.sources) && s.RejectedSource+s.RejectedRate > 100
			})

			// A legitimate peer from 127.0.0.3 joins during the flood.
			peer := newTestNode(t, func(c *Config) { c.ListenAddr = "" })
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}
			peer.dialFn = func(ctx context.Context, addr string) (net.Conn, error) {
				return d.DialContext(ctx, "tcp", addr)
			}
			start := time.Now()
			if err := peer.SetTargets([]string{server.Addr()}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 2*time.Second, "legitimate peer to link during the flood", func() bool {
				return server.rec.isUp(peer.PublicKey()) && peer.rec.isUp(server.PublicKey())
			})
			s := server.Stats()
			t.Logf("linked in %v during a flood from %d source(s); server: %d handshakes in flight, rejected %d by source cap, %d by rate, %d by global cap",
				time.Since(start).Round(time.Millisecond), len(tc.sources), s.HandshakesNow, s.RejectedSource, s.RejectedRate, s.RejectedGlobal)
			// The flood holds at most 4 per source; the peer's own attempts
			// (up to 3 in flight) may still be counted.
			if s.HandshakesNow > 4*len(tc.sources)+3 {
				t.Errorf("%d handshakes in flight; the flood should hold at most %d", s.HandshakesNow, 4*len(tc.sources))
			}
		})
	}
}

// TestPreAuthMemory measures the heap held per connection that is stuck in
// the TLS handshake (the limits are raised so that all of them are admitted).
func TestPreAuthMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1000 sockets")
	}
	const conns = 500
	for _, tc := range []struct {
		name  string
		bytes []byte // what each client sends before stalling
		limit int64  // bytes per connection we accept
	}{
		{"silent", nil, 32 << 10},
		// A record header announcing a 16 KiB handshake record, and 1 KiB of it.
		{"partial record", append([]byte{22, 3, 1, 0x40, 0x00}, make([]byte, 1024)...), 64 << 10},
		// Three full records of a ClientHello that announces 60000 bytes:
		// crypto/tls buffers the message until it is complete (it refuses
		// messages above 64 KiB).
		{"large partial ClientHello", largeHello(), 192 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server := newTestNode(t, func(c *Config) {
				c.SourceHandshakes, c.MaxHandshakes = 10000, 10000
				c.SourceRate, c.SourceBurst = 1e6, 1e6
				c.HandshakeTimeout = time.Minute
			})
			before := heapAndStacks()
			var clients []net.Conn
			for range conns {
				c := dialRaw(t, "", server.Addr())
				if len(tc.bytes) > 0 {
					if _, err := c.Write(tc.bytes); err != nil {
						t.Fatal(err)
					}
				}
				clients = append(clients, c)
			}
			waitFor(t, 10*time.Second, "all handshakes pending", func() bool {
				return server.Stats().HandshakesNow == conns
			})
			time.Sleep(50 * time.Millisecond) // let the handshake goroutines reach their reads
			after := heapAndStacks()
			per := (after - before) / conns
			t.Logf("%d pending handshakes (%s): %d bytes of heap and stacks each (includes the client's side of each socket)",
				conns, tc.name, per)
			if per > tc.limit {
				t.Errorf("%d bytes per pending connection, want at most %d", per, tc.limit)
			}
			runtime.KeepAlive(clients)
		})
	}
}

func heapAndStacks() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc + m.StackInuse)
}

// largeHello returns three 16 KiB handshake records carrying the start of a
// 60000-byte ClientHello.
func largeHello() []byte {
	var b []byte
	for i := range 3 {
		body := make([]byte, 16384)
		if i == 0 {
			copy(body, []byte{1, 0x00, 0xea, 0x60})
		}
		b = append(b, 22, 3, 1, 0x40, 0x00)
		b = append(b, body...)
	}
	return b
}
