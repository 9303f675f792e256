package netproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// sink is a target server that echoes what it reads and counts the bytes.
type sink struct {
	ln       net.Listener
	received atomic.Uint64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newSink(t *testing.T) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					s.received.Add(uint64(n))
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
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
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, not a wait for an event
	}
}

func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

func TestForward(t *testing.T) {
	s := newSink(t)
	p := newProxy(t, s.ln.Addr().String())
	c := dial(t, p.Addr())
	echo(t, c, "hello through the proxy")
	want := 2 * uint64(len("hello through the proxy"))
	eventually(t, "both directions counted", func() bool { return p.Stats().Forwarded == want })
	if p.Mode() != 0 {
		t.Errorf("Mode = %v, want healed", p.Mode())
	}
	if st := p.Stats(); st.Accepted != 1 || st.Open != 1 {
		t.Errorf("Stats = %+v, want 1 accepted and open", st)
	}
	_ = c.Close()
	eventually(t, "the closed connection to be forgotten", func() bool { st := p.Stats(); return st.Open == 0 && st.Closed == 1 })
}

func TestInvalidModeAndClosed(t *testing.T) {
	s := newSink(t)
	p := newProxy(t, s.ln.Addr().String())
	for _, m := range []Mode{0, -1, Stall + 1} {
		if err := p.Cut(m); !errors.Is(err, ErrInvalidMode) {
			t.Errorf("Cut(%d) = %v, want ErrInvalidMode", m, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := p.Cut(Reset); !errors.Is(err, ErrClosed) {
		t.Errorf("Cut after Close = %v, want ErrClosed", err)
	}
	if _, err := New("127.0.0.1:0", "no-port"); err == nil {
		t.Error("New with a target without port: no error")
	}
	if _, err := New("256.0.0.1:99999", s.ln.Addr().String()); err == nil {
		t.Error("New with a bad listen address: no error")
	}
}

func TestReset(t *testing.T) {
	s := newSink(t)
	p := newProxy(t, s.ln.Addr().String())
	c := dial(t, p.Addr())
	echo(t, c, "before")

	if err := p.Cut(Reset); err != nil {
		t.Fatal(err)
	}
	// The open connection is reset: a read fails with ECONNRESET, not EOF.
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after Reset = %v, want ECONNRESET", err)
	}
	// New connections are accepted and reset at once: the reset shows up
	// in the dial or in the first read.
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		defer c2.Close()
		if err := c2.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := c2.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read on new conn during Reset = %v, want ECONNRESET", err)
		}
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("dial during Reset = %v, want success or ECONNRESET", err)
	}
	eventually(t, "two resets counted", func() bool { return p.Stats().Reset >= 2 })

	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	echo(t, dial(t, p.Addr()), "after heal")
}

func TestBlackhole(t *testing.T) {
	s := newSink(t)
	p := newProxy(t, s.ln.Addr().String())
	c := dial(t, p.Addr())
	echo(t, c, "warm")
	before := s.received.Load()

	if err := p.Cut(Blackhole); err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("x"), 100_000)
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write into blackhole: %v (writes must succeed)", err)
	}
	// A connection opened during the cut is accepted and swallowed as well.
	c2 := dial(t, p.Addr())
	if _, err := c2.Write([]byte("new")); err != nil {
		t.Fatalf("write on new conn: %v", err)
	}
	eventually(t, "the proxy to discard everything", func() bool {
		return p.Stats().Discarded >= uint64(len(msg)+3)
	})
	if got := s.received.Load(); got != before {
		t.Fatalf("target received %d bytes during blackhole, want %d", got-before, 0)
	}
	// The client side is still open: no EOF, no reset, just silence.
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var ne net.Error
	if _, err := c.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read during blackhole = %v, want a timeout", err)
	}

	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	echo(t, c2, "healed") // c2 only ever sent "new", which was discarded
}

func TestOneWayBlackhole(t *testing.T) {
	for _, tc := range []struct {
		mode         Mode
		reachesSink  bool
		echoReturned bool
	}{
		{BlackholeToTarget, false, false},
		{BlackholeToClient, true, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			s := newSink(t)
			p := newProxy(t, s.ln.Addr().String())
			c := dial(t, p.Addr())
			echo(t, c, "warm")
			base := s.received.Load()
			var seenToClient atomic.Uint64
			p.Tap(func(d Direction, b []byte) {
				if d == ToClient {
					seenToClient.Add(uint64(len(b)))
				}
			})
			if err := p.Cut(tc.mode); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			if tc.reachesSink {
				eventually(t, "the echo to be read by the proxy", func() bool { return seenToClient.Load() >= 4 })
				if got := s.received.Load() - base; got != 4 {
					t.Fatalf("sink got %d bytes, want 4", got)
				}
			} else {
				eventually(t, "the bytes to be discarded", func() bool { return p.Stats().Discarded >= 4 })
				if got := s.received.Load() - base; got != 0 {
					t.Fatalf("sink got %d bytes, want 0", got)
				}
			}
			if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			_, err := c.Read(make([]byte, 4))
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("read = %v, want a timeout (nothing comes back)", err)
			}
		})
	}
}

func TestStall(t *testing.T) {
	s := newSink(t)
	p := newProxy(t, s.ln.Addr().String())
	c := dial(t, p.Addr())
	echo(t, c, "warm")
	if err := p.Cut(Stall); err != nil {
		t.Fatal(err)
	}
	// Nothing is read any more: a big enough write blocks until the deadline.
	if err := c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	var written int
	var err error
	for i := 0; i < 256 && err == nil; i++ {
		var n int
		n, err = c.Write(chunk)
		written += n
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("write during stall = %v after %d bytes, want a timeout", err, written)
	}
	if err := c.SetWriteDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	// After Heal the held bytes flow again: everything written comes back.
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, written)); err != nil {
		t.Fatalf("reading %d held bytes after heal: %v", written, err)
	}
}

func TestTapSeesBytes(t *testing.T) {
	s := newSink(t)
	p := newProxy(t, s.ln.Addr().String())
	var mu sync.Mutex
	var seen []byte
	p.Tap(func(d Direction, b []byte) {
		if d == ToTarget {
			mu.Lock()
			seen = append(seen, b...)
			mu.Unlock()
		}
	})
	c := dial(t, p.Addr())
	echo(t, c, "MARKER-123")
	mu.Lock()
	defer mu.Unlock()
	if !bytes.Contains(seen, []byte("MARKER-123")) {
		t.Fatalf("tap saw %q, want it to contain the marker", seen)
	}
}

func TestCloseEndsConnections(t *testing.T) {
	s := newSink(t)
	p := newProxy(t, s.ln.Addr().String())
	c := dial(t, p.Addr())
	echo(t, c, "x")
	if err := p.Cut(Stall); err != nil { // a stalled copier must not keep Close waiting
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after Close succeeded")
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("dial after Close succeeded")
	}
}
