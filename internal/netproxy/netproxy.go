// Package netproxy is a TCP proxy that can cut the link it carries, for tests
// and chaos runs of meshkv.
//
// A Proxy listens on one address and forwards every accepted connection to a
// fixed target. Cut changes what happens to the bytes:
//
//   - Reset closes every connection with a TCP RST and resets new ones as soon
//     as they are accepted (a crashed peer or a firewall REJECT rule).
//   - Blackhole keeps connections open but silently discards the bytes in both
//     directions; new connections are accepted and discarded the same way (a
//     dead switch port as seen by the application: writes succeed, nothing
//     arrives, nobody is told).
//   - BlackholeToTarget and BlackholeToClient discard one direction only.
//   - Stall stops reading in both directions, so the writers' socket buffers
//     fill up and their writes block (a dead path under load); bytes already
//     read are held and delivered after Heal.
//
// Heal restores forwarding for open connections and new ones. Bytes discarded
// while cut are gone: a framed protocol sees a corrupt stream after Heal and
// has to reconnect, exactly as after a real outage.
//
// The client side is the peer that dialled the proxy; the target side is the
// address given to New.
package netproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// Mode says how a cut link treats traffic.
type Mode int

// Modes for Cut. The zero value is not a mode: it is the healed state.
const (
	// Reset closes every connection with RST and resets new ones.
	Reset Mode = iota + 1
	// Blackhole discards bytes in both directions and keeps connections open.
	Blackhole
	// BlackholeToTarget discards bytes from the client to the target only.
	BlackholeToTarget
	// BlackholeToClient discards bytes from the target to the client only.
	BlackholeToClient
	// Stall stops reading in both directions, so writers block once the
	// socket buffers are full.
	Stall
)

func (m Mode) String() string {
	switch m {
	case 0:
		return "healed"
	case Reset:
		return "reset"
	case Blackhole:
		return "blackhole"
	case BlackholeToTarget:
		return "blackhole-to-target"
	case BlackholeToClient:
		return "blackhole-to-client"
	case Stall:
		return "stall"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Direction names one half of a proxied connection.
type Direction int

// Directions of a proxied connection.
const (
	// ToTarget is the stream from the dialling client to the target.
	ToTarget Direction = iota + 1
	// ToClient is the stream from the target back to the client.
	ToClient
)

func (d Direction) String() string {
	switch d {
	case ToTarget:
		return "to-target"
	case ToClient:
		return "to-client"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// ErrInvalidMode is returned by Cut for a value that is not one of the Modes.
var ErrInvalidMode = errors.New("netproxy: invalid mode")

// ErrClosed is returned by Cut and Heal after Close.
var ErrClosed = errors.New("netproxy: closed")

// Stats counts what a Proxy did since New.
type Stats struct {
	Accepted  uint64 // client connections accepted
	Open      uint64 // connections currently proxied
	Closed    uint64 // proxied connections that ended (either side closed or failed)
	Reset     uint64 // connections closed with RST because of a Reset cut
	DialFails uint64 // connections dropped because the target could not be dialled
	Forwarded uint64 // bytes written to the other side
	Discarded uint64 // bytes read and thrown away by a blackhole
}

// Proxy forwards TCP connections from its listen address to a target and can
// cut them on demand. Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // cancelled by Close, aborts dials to the target
	cancel context.CancelFunc

	mu     sync.Mutex
	mode   Mode
	modec  chan struct{} // closed and replaced whenever mode changes
	conns  map[*pair]struct{}
	tap    func(Direction, []byte)
	closed bool

	accepted, resets, dialFails, forwarded, discarded, closedConns atomic.Uint64

	wg sync.WaitGroup
}

// pair is one proxied connection: the accepted client side and the dialled
// target side.
type pair struct {
	client, target *net.TCPConn
}

// New listens on listen (HOST:PORT; port 0 picks a free port, see Addr) and
// forwards every accepted connection to target.
func New(listen, target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("netproxy: target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("netproxy: listen %q: %w", listen, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target: target,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		modec:  make(chan struct{}),
		conns:  make(map[*pair]struct{}),
	}
	p.wg.Go(p.acceptLoop)
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address connections are forwarded to.
func (p *Proxy) Target() string { return p.target }

// Mode reports the current mode; zero means healed.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	open := uint64(len(p.conns))
	p.mu.Unlock()
	return Stats{
		Accepted:  p.accepted.Load(),
		Open:      open,
		Closed:    p.closedConns.Load(),
		Reset:     p.resets.Load(),
		DialFails: p.dialFails.Load(),
		Forwarded: p.forwarded.Load(),
		Discarded: p.discarded.Load(),
	}
}

// Tap installs fn to observe every chunk of bytes read from either side,
// forwarded or not (a sniffer on the wire). fn runs on the copying goroutine:
// it must be quick and must not retain b. A nil fn removes the tap.
func (p *Proxy) Tap(fn func(dir Direction, b []byte)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tap = fn
}

// Cut breaks the link in the given mode, replacing any earlier cut.
func (p *Proxy) Cut(mode Mode) error {
	if mode < Reset || mode > Stall {
		return fmt.Errorf("%w: %d", ErrInvalidMode, int(mode))
	}
	return p.setMode(mode)
}

// Heal restores forwarding.
func (p *Proxy) Heal() error { return p.setMode(0) }

func (p *Proxy) setMode(mode Mode) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.mode = mode
	close(p.modec)
	p.modec = make(chan struct{})
	var victims []*pair
	if mode == Reset {
		for c := range p.conns {
			victims = append(victims, c)
			delete(p.conns, c)
		}
	}
	p.mu.Unlock()
	for _, c := range victims {
		c.reset()
		p.resets.Add(1)
	}
	return nil
}

// Close stops listening, closes every connection and waits for the proxy's
// goroutines. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	close(p.modec) // wake stalled copiers
	p.modec = make(chan struct{})
	conns := p.conns
	p.conns = make(map[*pair]struct{})
	p.mu.Unlock()

	p.cancel()
	err := p.ln.Close()
	for c := range conns {
		c.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // temporary accept error; the listener is still open
		}
		p.accepted.Add(1)
		client := c.(*net.TCPConn)
		if p.Mode() == Reset {
			resetConn(client)
			p.resets.Add(1)
			continue
		}
		p.wg.Go(func() { p.serve(client) })
	}
}

// serve dials the target for one accepted client and starts the copiers.
func (p *Proxy) serve(client *net.TCPConn) {
	var d net.Dialer
	tc, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		p.dialFails.Add(1)
		resetConn(client)
		return
	}
	c := &pair{client: client, target: tc.(*net.TCPConn)}
	p.mu.Lock()
	if p.closed || p.mode == Reset {
		reset := !p.closed
		p.mu.Unlock()
		if reset {
			c.reset()
			p.resets.Add(1)
		} else {
			c.close()
		}
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { p.copy(c, ToTarget, c.target, c.client) })
	wg.Go(func() { p.copy(c, ToClient, c.client, c.target) })
	wg.Wait()

	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.close()
	p.closedConns.Add(1)
}

// state returns what the copier for dir must do now, and a channel closed at
// the next mode change.
func (p *Proxy) state(dir Direction) (discard, stall, closed bool, changed <-chan struct{}, tap func(Direction, []byte)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.mode {
	case Blackhole:
		discard = true
	case BlackholeToTarget:
		discard = dir == ToTarget
	case BlackholeToClient:
		discard = dir == ToClient
	case Stall:
		stall = true
	}
	return discard, stall, p.closed, p.modec, p.tap
}

// copy moves bytes from src to dst until either side fails, obeying the mode
// before every read and every write. A clean EOF is passed on as a half
// close; any other failure ends both directions.
func (p *Proxy) copy(c *pair, dir Direction, dst, src *net.TCPConn) {
	buf := make([]byte, 32<<10)
	for {
		if !p.waitUnstalled(dir) {
			c.close()
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitUnstalled(dir) {
				c.close()
				return
			}
			discard, _, _, _, tap := p.state(dir)
			if tap != nil {
				tap(dir, buf[:n])
			}
			if discard {
				p.discarded.Add(uint64(n))
			} else {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					c.close()
					return
				}
				p.forwarded.Add(uint64(n))
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = dst.CloseWrite()
			} else {
				c.close()
			}
			return
		}
	}
}

// waitUnstalled blocks while dir is stalled; it reports false once the proxy
// is closed.
func (p *Proxy) waitUnstalled(dir Direction) bool {
	for {
		_, stall, closed, changed, _ := p.state(dir)
		if closed {
			return false
		}
		if !stall {
			return true
		}
		<-changed
	}
}

func (c *pair) reset() {
	resetConn(c.client)
	resetConn(c.target)
}

func (c *pair) close() {
	_ = c.client.Close()
	_ = c.target.Close()
}

// resetConn closes c so that the kernel sends RST instead of FIN.
func resetConn(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}
