package peerlink

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxDatagram      = 1 << 20
	DefaultSendQueue        = 4096
	DefaultSendQueueBytes   = 32 << 20
	DefaultStreamWindow     = 4 << 20
	DefaultMaxStreams       = 4
	DefaultPingInterval     = 50 * time.Millisecond
	DefaultDeadAfter        = 250 * time.Millisecond
	DefaultDeadAfterMax     = 2 * time.Second
	DefaultRedialInterval   = 100 * time.Millisecond
	DefaultRedialMax        = 5 * time.Second
	DefaultBackoffAfter     = time.Minute
	DefaultDialTimeout      = 500 * time.Millisecond
	DefaultHandshakeTimeout = 3 * time.Second
	DefaultWriteTimeout     = 2 * time.Second
	DefaultSourceHandshakes = 4
	DefaultSourceRate       = 20
	DefaultSourceBurst      = 40
	DefaultMaxHandshakes    = 64
)

// Limits on values that travel in the Hello.
const (
	MaxClusterName   = 128
	MaxAdvertiseAddr = 256
	MaxAppHello      = 512
	// minDatagramLimit and maxDatagramLimit bound MaxDatagram (ours and the
	// one a peer announces).
	minDatagramLimit = 1 << 10
	maxDatagramLimit = 64 << 20
	// minStreamWindow and maxStreamWindow bound StreamWindow likewise.
	minStreamWindow = 64 << 10
	maxStreamWindow = 1 << 30
)

// Errors returned by this package.
var (
	// ErrInvalidConfig is wrapped by every Config.Validate error.
	ErrInvalidConfig = errors.New("peerlink: invalid config")
	// ErrStopped is returned after Close.
	ErrStopped = errors.New("peerlink: stopped")
	// ErrStarted is returned by a second Start.
	ErrStarted = errors.New("peerlink: already started")
	// ErrNoLink is returned by OpenStream when there is no live link to the peer.
	ErrNoLink = errors.New("peerlink: no link to peer")
	// ErrTooManyStreams is returned by OpenStream when the link already
	// carries Config.MaxStreams open streams.
	ErrTooManyStreams = errors.New("peerlink: too many streams on link")
	// ErrStreamClosed is returned by Stream reads and writes after Close, and
	// by writes after the peer closed the stream.
	ErrStreamClosed = errors.New("peerlink: stream closed")
)

// Reasons a link goes down, passed to Handler.OnLinkDown (possibly wrapped;
// test with errors.Is).
var (
	// ErrDead: nothing arrived from the peer for longer than the link's
	// dead threshold, or a socket write timed out.
	ErrDead = errors.New("peerlink: link dead")
	// ErrConnLost: the connection failed (reset, EOF, read or write error).
	ErrConnLost = errors.New("peerlink: connection lost")
	// ErrDuplicate: another link to the same peer won the duplicate
	// resolution.
	ErrDuplicate = errors.New("peerlink: duplicate link")
	// ErrPeerClosed: the peer closed the link and said why.
	ErrPeerClosed = errors.New("peerlink: closed by peer")
	// ErrProtocol: the peer violated the protocol and was disconnected.
	ErrProtocol = errors.New("peerlink: protocol violation")
	// ErrShutdown: our node is closing.
	ErrShutdown = errors.New("peerlink: shutdown")
)

// Config configures a Node. Every zero value means the documented default;
// Validate reports nonsense and changes nothing.
type Config struct {
	// ListenAddr is the HOST:PORT to accept links on. "" means dial only.
	// Port 0 picks a free port at Start (see Node.Addr).
	ListenAddr string
	// Identity is this node's key pair; required.
	Identity *Identity
	// ClusterSecret admits peers: only certificates signed by the cluster CA
	// derived from the same password are accepted. nil is insecure mode:
	// every peer is admitted (links are still encrypted and every peer is
	// known by its own key). The layer above decides whether to allow that.
	ClusterSecret *ClusterSecret
	// ClusterName must be equal on both ends of a link (at most
	// MaxClusterName bytes).
	ClusterName string
	// AdvertiseAddr is the HOST:PORT peers should dial to reach us, sent in
	// the Hello (at most MaxAdvertiseAddr bytes). Default: ListenAddr when
	// it names a specific host.
	AdvertiseAddr string
	// AppHello is opaque bytes sent in the Hello (at most MaxAppHello bytes),
	// passed to the peer's Authorize and Handler as PeerInfo.App.
	AppHello []byte
	// Handler receives link events, datagrams and streams. nil discards
	// them.
	Handler Handler
	// Authorize is called once per new link after the Hellos are exchanged
	// and before the link is up; an error refuses the link and its text is
	// sent to the peer. nil admits every peer that passed the certificate
	// check. It runs on the handshake goroutine and should be quick.
	Authorize func(PeerInfo) error
	// Logger receives link state changes and refusals. nil discards.
	Logger *slog.Logger

	// MaxDatagram is the largest datagram we accept (and announce to
	// peers); default 1 MiB. Send refuses datagrams larger than the
	// smaller of ours and the peer's.
	MaxDatagram int
	// SendQueue bounds the datagrams in flight per link, queued plus sent
	// and not yet acknowledged; default 4096.
	SendQueue int
	// SendQueueBytes bounds the bytes of those datagrams; default 32 MiB.
	SendQueueBytes int
	// StreamWindow is the receive window of each stream: the most bytes a
	// peer may send on it before our reader consumes them; default 4 MiB.
	StreamWindow int
	// MaxStreams bounds the open streams per link (both directions
	// together); default 4.
	MaxStreams int

	// PingInterval is the time between pings on each link; default 50ms.
	PingInterval time.Duration
	// DeadAfter is the shortest silence after which a link is declared dead;
	// default 250ms. The threshold adapts upwards to observed gaps and
	// after flapping, up to DeadAfterMax (default 2s).
	DeadAfter    time.Duration
	DeadAfterMax time.Duration
	// RedialInterval is the time between dial attempts to a target without
	// a link; default 100ms. Targets failing for longer than BackoffAfter
	// (default 1m) are retried less often, doubling up to RedialMax
	// (default 5s).
	RedialInterval time.Duration
	RedialMax      time.Duration
	BackoffAfter   time.Duration
	// DialTimeout bounds one outbound attempt: TCP connect, TLS handshake
	// and Hello; default 500ms. The TCP connect alone is bounded by
	// 2*RedialInterval (if shorter), and at most three attempts per target
	// are in flight, so a fresh SYN goes out about every RedialInterval
	// while a path is silently dead.
	DialTimeout time.Duration
	// HandshakeTimeout bounds an inbound handshake (TLS and Hello); default 3s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds every socket write; default 2s. It also sets
	// TCP_USER_TIMEOUT on Linux (at least DeadAfterMax).
	WriteTimeout time.Duration

	// SourceHandshakes bounds concurrent inbound handshakes per source (an
	// IPv4 address or an IPv6 /64); default 4.
	SourceHandshakes int
	// SourceRate and SourceBurst form each source's token bucket of inbound
	// connections; default 20/s with a burst of 40.
	SourceRate  float64
	SourceBurst int
	// MaxHandshakes bounds concurrent inbound handshakes from all sources;
	// default 64.
	MaxHandshakes int
}

// Validate reports the first problem with c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Identity == nil {
		return bad("identity is required")
	}
	if c.ListenAddr != "" {
		if _, _, err := splitHostPort(c.ListenAddr); err != nil {
			return bad("listen address %q: %v", c.ListenAddr, err)
		}
	}
	if c.AdvertiseAddr != "" {
		host, port, err := splitHostPort(c.AdvertiseAddr)
		if err != nil || host == "" || port == 0 {
			return bad("advertise address %q: want HOST:PORT with a non-zero port", c.AdvertiseAddr)
		}
	}
	if len(c.AdvertiseAddr) > MaxAdvertiseAddr {
		return bad("advertise address longer than %d bytes", MaxAdvertiseAddr)
	}
	if len(c.ClusterName) > MaxClusterName {
		return bad("cluster name longer than %d bytes", MaxClusterName)
	}
	if len(c.AppHello) > MaxAppHello {
		return bad("app hello longer than %d bytes", MaxAppHello)
	}
	if c.MaxDatagram != 0 && (c.MaxDatagram < minDatagramLimit || c.MaxDatagram > maxDatagramLimit) {
		return bad("max datagram %d outside [%d, %d]", c.MaxDatagram, minDatagramLimit, maxDatagramLimit)
	}
	if c.StreamWindow != 0 && (c.StreamWindow < minStreamWindow || c.StreamWindow > maxStreamWindow) {
		return bad("stream window %d outside [%d, %d]", c.StreamWindow, minStreamWindow, maxStreamWindow)
	}
	for name, v := range map[string]int{
		"send queue": c.SendQueue, "send queue bytes": c.SendQueueBytes, "max streams": c.MaxStreams,
		"source handshakes": c.SourceHandshakes, "source burst": c.SourceBurst, "max handshakes": c.MaxHandshakes,
	} {
		if v < 0 {
			return bad("%s %d is negative", name, v)
		}
	}
	if c.SourceRate < 0 {
		return bad("source rate %v is negative", c.SourceRate)
	}
	for name, d := range map[string]time.Duration{
		"ping interval": c.PingInterval, "dead after": c.DeadAfter, "dead after max": c.DeadAfterMax,
		"redial interval": c.RedialInterval, "redial max": c.RedialMax, "backoff after": c.BackoffAfter,
		"dial timeout": c.DialTimeout, "handshake timeout": c.HandshakeTimeout, "write timeout": c.WriteTimeout,
	} {
		if d < 0 {
			return bad("%s %v is negative", name, d)
		}
	}
	d := c.withDefaults()
	if d.DeadAfter < 2*d.PingInterval {
		return bad("dead after %v is less than two ping intervals (%v)", d.DeadAfter, d.PingInterval)
	}
	if d.DeadAfterMax < d.DeadAfter {
		return bad("dead after max %v is less than dead after %v", d.DeadAfterMax, d.DeadAfter)
	}
	if d.RedialMax < d.RedialInterval {
		return bad("redial max %v is less than redial interval %v", d.RedialMax, d.RedialInterval)
	}
	return nil
}

// withDefaults returns c with every zero value replaced by its default.
func (c Config) withDefaults() Config {
	setInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setInt(&c.MaxDatagram, DefaultMaxDatagram)
	setInt(&c.SendQueue, DefaultSendQueue)
	setInt(&c.SendQueueBytes, DefaultSendQueueBytes)
	setInt(&c.StreamWindow, DefaultStreamWindow)
	setInt(&c.MaxStreams, DefaultMaxStreams)
	setDur(&c.PingInterval, DefaultPingInterval)
	setDur(&c.DeadAfter, DefaultDeadAfter)
	setDur(&c.DeadAfterMax, DefaultDeadAfterMax)
	setDur(&c.RedialInterval, DefaultRedialInterval)
	setDur(&c.RedialMax, DefaultRedialMax)
	setDur(&c.BackoffAfter, DefaultBackoffAfter)
	setDur(&c.DialTimeout, DefaultDialTimeout)
	setDur(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	setDur(&c.WriteTimeout, DefaultWriteTimeout)
	setInt(&c.SourceHandshakes, DefaultSourceHandshakes)
	setInt(&c.SourceBurst, DefaultSourceBurst)
	setInt(&c.MaxHandshakes, DefaultMaxHandshakes)
	if c.SourceRate == 0 {
		c.SourceRate = DefaultSourceRate
	}
	if c.AdvertiseAddr == "" && c.ListenAddr != "" {
		if host, port, err := splitHostPort(c.ListenAddr); err == nil && port != 0 {
			if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
				c.AdvertiseAddr = c.ListenAddr
			}
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Handler == nil {
		c.Handler = nopHandler{}
	}
	c.AppHello = append([]byte(nil), c.AppHello...)
	return c
}

// splitHostPort parses HOST:PORT with a numeric port in 0..65535.
func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number in 0..65535", ps)
	}
	return host, port, nil
}
