package peerlink

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// memNet is an in-memory network for tests under testing/synctest: every
// blocking operation is a channel operation, so fake time advances while
// the nodes wait. A cut is silent, like a pulled cable under TCP: bytes
// written and connection closes are held back and delivered in order once
// the cut heals (TCP retransmits them), and new connections hang until
// their dial times out (lost SYNs).
type memNet struct {
	mu        sync.Mutex
	listeners map[string]*memListener
	cut       bool
	port      int
	held      []*memConn // connections with bytes or a close held back by the cut
}

func newMemNet() *memNet { return &memNet{listeners: make(map[string]*memListener)} }

func (m *memNet) setCut(cut bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cut = cut
	if cut {
		return
	}
	for _, c := range m.held {
		for _, b := range c.held {
			select {
			case c.out <- b:
			default: // the reader is gone and the buffer full: the bytes are lost with the connection
			}
		}
		c.held = nil
		if c.finHeld {
			c.finHeld = false
			close(c.fin)
		}
	}
	m.held = nil
}

func (m *memNet) isCut() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cut
}

func (m *memNet) listen(_ context.Context, addr string) (net.Listener, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.listeners[addr] != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, syscall.EADDRINUSE)
	}
	l := &memListener{net: m, addr: memAddr(addr), c: make(chan net.Conn, 16), done: make(chan struct{})}
	m.listeners[addr] = l
	return l, nil
}

func (m *memNet) dial(ctx context.Context, addr string) (net.Conn, error) {
	m.mu.Lock()
	l, cut := m.listeners[addr], m.cut
	m.port++
	local := memAddr(fmt.Sprintf("10.9.%d.%d:%d", m.port/250, m.port%250+1, 40000+m.port))
	m.mu.Unlock()
	if cut {
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: "mem", Err: ctx.Err()}
	}
	if l == nil {
		return nil, &net.OpError{Op: "dial", Net: "mem", Err: syscall.ECONNREFUSED}
	}
	client, server := memPair(m, local, memAddr(addr))
	select {
	case l.c <- server:
		return client, nil
	case <-l.done:
		return nil, &net.OpError{Op: "dial", Net: "mem", Err: syscall.ECONNREFUSED}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

type memListener struct {
	net  *memNet
	addr memAddr
	c    chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.net.mu.Lock()
		delete(l.net.listeners, string(l.addr))
		l.net.mu.Unlock()
	})
	return nil
}

func (l *memListener) Addr() net.Addr { return l.addr }

// memConn is one end of a buffered in-memory connection.
type memConn struct {
	net           *memNet
	local, remote memAddr
	in, out       chan []byte
	rest          []byte
	closed        chan struct{} // closed by our Close
	fin           chan struct{} // closed by our Close unless cut; the peer's peerClosed
	peerClosed    chan struct{}
	once          *sync.Once
	rd, wd        deadline
	held          [][]byte // written during a cut; guarded by net.mu
	finHeld       bool     // closed during a cut; guarded by net.mu
}

func memPair(m *memNet, a, b memAddr) (*memConn, *memConn) {
	ab, ba := make(chan []byte, 4096), make(chan []byte, 4096)
	fa, fb := make(chan struct{}), make(chan struct{})
	x := &memConn{net: m, local: a, remote: b, in: ba, out: ab, closed: make(chan struct{}), fin: fa, peerClosed: fb, once: new(sync.Once)}
	y := &memConn{net: m, local: b, remote: a, in: ab, out: ba, closed: make(chan struct{}), fin: fb, peerClosed: fa, once: new(sync.Once)}
	x.rd.init()
	x.wd.init()
	y.rd.init()
	y.wd.init()
	return x, y
}

func (c *memConn) Read(p []byte) (int, error) {
	if len(c.rest) == 0 {
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		default:
		}
		select {
		case b := <-c.in:
			c.rest = b
		case <-c.closed:
			return 0, net.ErrClosed
		case <-c.peerClosed:
			select {
			case b := <-c.in:
				c.rest = b
			default:
				return 0, io.EOF
			}
		case <-c.rd.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.peerClosed:
		return 0, syscall.EPIPE
	case <-c.wd.wait():
		return 0, os.ErrDeadlineExceeded
	default:
	}
	m := c.net
	m.mu.Lock()
	if m.cut {
		if c.held == nil && !c.finHeld {
			m.held = append(m.held, c)
		}
		c.held = append(c.held, append([]byte(nil), p...))
		m.mu.Unlock()
		return len(p), nil
	}
	m.mu.Unlock()
	select {
	case c.out <- append([]byte(nil), p...):
		return len(p), nil
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.peerClosed:
		return 0, syscall.EPIPE
	case <-c.wd.wait():
		return 0, os.ErrDeadlineExceeded
	}
}

// Close ends the connection. While the network is cut the peer learns of
// it only after the heal.
func (c *memConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		m := c.net
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.cut {
			if c.held == nil {
				m.held = append(m.held, c)
			}
			c.finHeld = true
			return
		}
		close(c.fin)
	})
	return nil
}

func (c *memConn) LocalAddr() net.Addr  { return c.local }
func (c *memConn) RemoteAddr() net.Addr { return c.remote }

func (c *memConn) SetDeadline(t time.Time) error {
	c.rd.set(t)
	c.wd.set(t)
	return nil
}
func (c *memConn) SetReadDeadline(t time.Time) error  { c.rd.set(t); return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { c.wd.set(t); return nil }

// deadline is a channel closed when a deadline passes.
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer
	c     chan struct{}
}

func (d *deadline) init() { d.c = make(chan struct{}) }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	select {
	case <-d.c:
		d.c = make(chan struct{}) // expired before: re-arm
	default:
	}
	if t.IsZero() {
		return
	}
	if dur := time.Until(t); dur <= 0 {
		close(d.c)
		return
	}
	c := d.c
	d.timer = time.AfterFunc(time.Until(t), func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.c == c {
			select {
			case <-c:
			default:
				close(c)
			}
		}
	})
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.c
}
