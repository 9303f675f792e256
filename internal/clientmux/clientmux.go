// Package clientmux serves gRPC and HTTP on one listener, as etcd's client
// port does, so that etcdctl, clientv3, curl and Prometheus all reach a node
// at the same address.
//
// Each listener admits plain-text connections, TLS connections, or both on
// one port (ListenerOptions); a connection's first byte tells which it is
// (a TLS handshake record starts with 0x16). A plain-text connection is told
// apart further by its first bytes: the HTTP/2 client preface (every gRPC
// client sends it first) hands the connection to the gRPC server's own
// transport; anything else is HTTP/1 and goes to the HTTP server.
//
// A TLS connection is terminated here (ListenerOptions.TLS), within
// Config.SniffTimeout, and told apart by ALPN: a client that negotiated
// "h2" without offering "http/1.1" is a gRPC client (gRPC clients offer
// "h2" alone; curl, browsers, Go's and Prometheus's HTTP clients offer
// both), and its connection goes to the gRPC server's own HTTP/2
// transport, which is much faster than serving gRPC through net/http.
// Every other TLS connection goes to the HTTP server, which speaks HTTP/2
// or HTTP/1.1 as negotiated and still hands requests with an
// application/grpc content type over HTTP/2 to the gRPC server
// (grpc.Server.ServeHTTP, as etcd does over TLS), so that a gRPC client
// that also offers HTTP/1.1 works too. The gRPC server must be made with
// Credentials, which give the connections it gets from the mux over TLS
// a credentials.TLSInfo (the client's verified certificate); ServeHTTP
// gives the same. The TLS configuration must offer "h2" (for gRPC) and
// "http/1.1" in NextProtos. A listener whose Accept returns a *tls.Conn
// itself (as a tls.NewListener does) has its connections served by the
// HTTP server, since their ClientHello is not seen here.
//
// Goroutines: Serve runs the accept loop of its listener and, per accepted
// connection, a short-lived goroutine that reads the first bytes and
// completes a TLS handshake (bounded by Config.SniffTimeout). One goroutine
// per Serve call serves the HTTP server and one the gRPC server on the
// connections handed to them. Close stops them; the gRPC server itself is
// the caller's to stop.
package clientmux

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
)

// Config configures a Mux.
type Config struct {
	// GRPC serves gRPC (required), made with Credentials so that gRPC
	// over TLS sees the client's certificate. The caller stops it (before
	// or after Close).
	GRPC *grpc.Server
	// HTTP serves every request that is not gRPC (required).
	HTTP http.Handler
	// SniffTimeout bounds how long a new connection may take to send the
	// bytes that tell gRPC from HTTP, or to complete its TLS handshake
	// (default 10s).
	SniffTimeout time.Duration
	// ReadHeaderTimeout bounds reading an HTTP request's header (default
	// 30s).
	ReadHeaderTimeout time.Duration
	// MaxConcurrentStreams bounds the concurrent HTTP/2 streams of a TLS
	// connection served by the HTTP server (0: unlimited, as etcd's
	// default).
	MaxConcurrentStreams uint32
	// Logger receives serving errors (nil: discard).
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultSniffTimeout      = 10 * time.Second
	DefaultReadHeaderTimeout = 30 * time.Second
)

// preface is what an HTTP/2 client sends first (RFC 9113, 3.4).
const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("clientmux: closed")

// Mux serves gRPC and HTTP on any number of listeners.
type Mux struct {
	cfg  Config
	http *http.Server
	log  *slog.Logger

	mu      sync.Mutex
	closed  bool
	subs    []*subListener
	routing map[net.Conn]struct{} // plain-text connections being told apart
	wg      sync.WaitGroup
}

// New returns a Mux.
func New(cfg Config) (*Mux, error) {
	if cfg.GRPC == nil || cfg.HTTP == nil {
		return nil, errors.New("clientmux: Config.GRPC and Config.HTTP are required")
	}
	if cfg.SniffTimeout <= 0 {
		cfg.SniffTimeout = DefaultSniffTimeout
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Mux{cfg: cfg, log: cfg.Logger, routing: make(map[net.Conn]struct{})}
	streams := int(math.MaxInt32) // net/http replaces values above MaxInt32 by its default
	if cfg.MaxConcurrentStreams > 0 {
		streams = int(min(cfg.MaxConcurrentStreams, math.MaxInt32))
	}
	m.http = &http.Server{
		Handler:           grpcOverHTTP2(cfg.GRPC, cfg.HTTP),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: streams},
	}
	return m, nil
}

// grpcOverHTTP2 sends gRPC requests (HTTP/2, application/grpc) to g and
// the rest to h.
func grpcOverHTTP2(g *grpc.Server, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			g.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// ListenerOptions say which connections one listener admits.
type ListenerOptions struct {
	// TLS terminates connections that start a TLS handshake; nil refuses
	// them (unless the listener hands out *tls.Conn itself).
	TLS *tls.Config
	// Plain admits plain-text connections.
	Plain bool
}

// tlsRecordHandshake is the first byte of every TLS connection.
const tlsRecordHandshake = 0x16

// Serve accepts connections on l until l fails or Close is called, and
// returns the listener's error (nil after Close). It closes l on return.
func (m *Mux) Serve(l net.Listener, o ListenerOptions) error {
	grpcL, httpL := newSubListener(l.Addr()), newSubListener(l.Addr())
	if o.TLS != nil {
		o.TLS = noteALPNOffers(o.TLS)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		_ = l.Close()
		return ErrClosed
	}
	m.subs = append(m.subs, grpcL, httpL)
	m.wg.Add(2)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		if err := m.cfg.GRPC.Serve(grpcL); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, grpc.ErrServerStopped) {
			m.log.Error("gRPC serving stopped", "addr", l.Addr().String(), "err", err)
		}
	}()
	go func() {
		defer m.wg.Done()
		if err := m.http.Serve(httpL); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("HTTP serving stopped", "addr", l.Addr().String(), "err", err)
		}
	}()
	defer func() {
		_ = l.Close()
		_ = grpcL.Close()
		_ = httpL.Close()
	}()

	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: back off, as
				// net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			if m.isClosed() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		delay = 0
		if _, ok := c.(*tls.Conn); ok {
			httpL.deliver(c)
			continue
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			_ = c.Close()
			return nil
		}
		m.routing[c] = struct{}{}
		m.wg.Add(1)
		m.mu.Unlock()
		go func() {
			defer m.wg.Done()
			m.route(c, o, grpcL, httpL)
			m.mu.Lock()
			delete(m.routing, c)
			m.mu.Unlock()
		}()
	}
}

// route reads a connection's first bytes and hands it on: a TLS one,
// terminated, to the HTTP server; a plain-text one to gRPC or HTTP.
func (m *Mux) route(c net.Conn, o ListenerOptions, grpcL, httpL *subListener) {
	_ = c.SetReadDeadline(time.Now().Add(m.cfg.SniffTimeout))
	buf := make([]byte, len(preface))
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		_ = c.Close()
		return
	}
	if buf[0] == tlsRecordHandshake {
		if o.TLS == nil {
			_ = c.Close()
			return
		}
		m.routeTLS(c, buf[:1], o.TLS, grpcL, httpL)
		return
	}
	if !o.Plain {
		_ = c.Close()
		return
	}
	n := 1
	isGRPC := false
	for {
		if !bytes.HasPrefix([]byte(preface), buf[:n]) {
			break // diverged from the preface: HTTP/1
		}
		if n == len(preface) {
			isGRPC = true
			break
		}
		k, err := c.Read(buf[n:])
		n += k
		if err != nil && bytes.HasPrefix([]byte(preface), buf[:n]) && n < len(preface) {
			_ = c.Close() // closed or silent before saying what it is
			return
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	pc := &prefixConn{Conn: c, r: io.MultiReader(bytes.NewReader(buf[:n]), c)}
	if isGRPC {
		grpcL.deliver(pc)
	} else {
		httpL.deliver(pc)
	}
}

// routeTLS completes the TLS handshake of c (whose first bytes, read,
// are first) within the sniff timeout, and hands the connection to the
// gRPC server's transport if the client is a gRPC one (it negotiated "h2"
// and offered no HTTP/1.1), else to the HTTP server.
func (m *Mux) routeTLS(c net.Conn, first []byte, cfg *tls.Config, grpcL, httpL *subListener) {
	pc := &prefixConn{Conn: c, r: io.MultiReader(bytes.NewReader(first), c)}
	tc := tls.Server(pc, cfg)
	_ = c.SetDeadline(time.Now().Add(m.cfg.SniffTimeout))
	if err := tc.Handshake(); err != nil {
		m.log.Debug("TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	if pc.grpcOnly && tc.ConnectionState().NegotiatedProtocol == "h2" {
		grpcL.deliver(&tlsConn{tc})
		return
	}
	httpL.deliver(tc)
}

// noteALPNOffers returns a copy of cfg that notes, on each connection's
// prefixConn, whether the client offered HTTP/2 without HTTP/1.1 in ALPN.
func noteALPNOffers(cfg *tls.Config) *tls.Config {
	cfg = cfg.Clone()
	next := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if pc, ok := hello.Conn.(*prefixConn); ok {
			pc.grpcOnly = slices.Contains(hello.SupportedProtos, "h2") && !slices.Contains(hello.SupportedProtos, "http/1.1")
		}
		if next != nil {
			return next(hello)
		}
		return nil, nil
	}
	return cfg
}

func (m *Mux) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// Close stops serving: it closes the sublisteners and the HTTP server (and
// its connections) and waits for the Mux's goroutines. Each Serve returns
// once its listener is closed by its owner. The gRPC server is the
// caller's to stop.
func (m *Mux) Close() error {
	m.mu.Lock()
	m.closed = true
	subs := m.subs
	for c := range m.routing {
		_ = c.Close() // unblocks route
	}
	m.mu.Unlock()
	for _, s := range subs {
		_ = s.Close()
	}
	err := m.http.Close()
	m.wg.Wait()
	return err
}

// prefixConn replays the bytes read to route the connection.
type prefixConn struct {
	net.Conn
	r io.Reader
	// grpcOnly: the TLS client offered "h2" and not "http/1.1".
	grpcOnly bool
}

// tlsConn is a TLS connection the mux handed to the gRPC server, its
// handshake complete; Credentials recognize it.
type tlsConn struct{ *tls.Conn }

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// subListener is a listener fed by the accept loop.
type subListener struct {
	addr     net.Addr
	connc    chan net.Conn
	done     chan struct{}
	once     sync.Once
	accepted atomic.Int64 // connections handed out, for tests
}

func newSubListener(addr net.Addr) *subListener {
	return &subListener{addr: addr, connc: make(chan net.Conn), done: make(chan struct{})}
}

// deliver hands c to the server accepting on s, or closes it if s is
// closed.
func (s *subListener) deliver(c net.Conn) {
	select {
	case s.connc <- c:
	case <-s.done:
		_ = c.Close()
	}
}

func (s *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.connc:
		s.accepted.Add(1)
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *subListener) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

func (s *subListener) Addr() net.Addr { return s.addr }
