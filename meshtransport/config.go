package meshtransport

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
	DefaultListenAddr      = "127.0.0.1:2380"
	DefaultProbeInterval   = 200 * time.Millisecond
	DefaultProbeFailures   = 3
	DefaultQueueLen        = 4096
	DefaultSnapshotTimeout = 10 * time.Second
	DefaultGossipInterval  = time.Second
)

// Sizes on the wire.
const (
	// MaxFrame is the largest unicast meshtransport hands to mesh (mesh itself
	// kills the connection above 10 MiB).
	MaxFrame = 1 << 20
	// ChunkSize is the payload of one chunk of a large message. A message
	// larger than this, and every MsgSnap, is sent in chunks.
	ChunkSize = 512 << 10
	// MaxTransfer is the largest message that can be sent in chunks.
	MaxTransfer = 1 << 30
	// reassemblyBytes bounds the memory held by incomplete inbound transfers
	// from all peers together.
	reassemblyBytes = 2 * MaxTransfer
)

// Errors returned by this package.
var (
	// ErrInvalidConfig is wrapped by every Config.Validate error.
	ErrInvalidConfig = errors.New("meshtransport: invalid config")
	// ErrBind is returned by Start when the listen address cannot be bound.
	ErrBind = errors.New("meshtransport: cannot bind listen address")
	// ErrStopped is returned by Start after Close.
	ErrStopped = errors.New("meshtransport: stopped")
	// ErrStarted is returned by a second Start.
	ErrStarted = errors.New("meshtransport: already started")
)

// Config configures a Transport. Every zero value means the documented
// default; Validate reports nonsense and changes nothing.
type Config struct {
	// ListenAddr is the HOST:PORT mesh listens on; default "127.0.0.1:2380".
	// Port 0 picks a free port at Start (see Transport.Addr). With a
	// specific host (not 0.0.0.0 or ::) the address is gossiped, and peers
	// with PeerDiscovery on dial it.
	ListenAddr string
	// Peers are HOST:PORT addresses mesh connects to at Start (and keeps
	// reconnecting to).
	Peers []string
	// PeerDiscovery: nil means true: connect to every peer our peers know,
	// by the address it gossips (see ListenAddr) or, as mesh does, by the
	// address our neighbours see with our own port. False connects only to
	// Peers, which lets tests build partial topologies.
	PeerDiscovery *bool
	// Password turns on mesh's encryption and authentication. nil means no
	// encryption; a non-nil password must not be empty.
	Password []byte
	// NickName is a human name for logs and Peer.NickName.
	NickName string
	// ClusterName separates clusters sharing one mesh: peers gossiping
	// another cluster name get no raft traffic, probes or relays from us.
	ClusterName string
	// ProbeInterval is the time between liveness probes to each peer;
	// default 200ms.
	ProbeInterval time.Duration
	// ProbeFailures is the number of consecutive unanswered probes after
	// which a peer's direct route counts as dead; default 3.
	ProbeFailures int
	// QueueLen bounds each per-destination send queue (in messages);
	// default 4096.
	QueueLen int
	// SnapshotTimeout bounds a chunked transfer: the sender reports failure
	// when no acknowledgement arrived this long after the last chunk was
	// written, and the receiver drops an incomplete transfer this long after
	// its last chunk arrived; default 10s. A lost chunk is not resent: the
	// transfer fails and raft sends the snapshot again.
	SnapshotTimeout time.Duration
	// GossipInterval is how often mesh gossips full metadata and topology to
	// random neighbours (changes are broadcast at once regardless); default 1s.
	GossipInterval time.Duration
	// Logger receives state changes (peer up/down, detours, foreign
	// clusters) and mesh's own log at debug level. nil discards.
	Logger *slog.Logger
}

// Validate reports the first problem with c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.ListenAddr != "" {
		if _, _, err := splitHostPort(c.ListenAddr); err != nil {
			return bad("listen address %q: %v", c.ListenAddr, err)
		}
	}
	for _, p := range c.Peers {
		host, port, err := splitHostPort(p)
		if err != nil {
			return bad("peer %q: %v", p, err)
		}
		if host == "" || port == 0 {
			return bad("peer %q: want HOST:PORT with a non-zero port", p)
		}
	}
	if c.Password != nil && len(c.Password) == 0 {
		return bad("password is empty (nil means no encryption; an empty password would authenticate nobody)")
	}
	if c.ProbeInterval < 0 {
		return bad("probe interval %v is negative", c.ProbeInterval)
	}
	if c.ProbeFailures < 0 {
		return bad("probe failures %d is negative", c.ProbeFailures)
	}
	if c.QueueLen < 0 {
		return bad("queue length %d is negative", c.QueueLen)
	}
	if c.SnapshotTimeout < 0 {
		return bad("snapshot timeout %v is negative", c.SnapshotTimeout)
	}
	if c.GossipInterval < 0 {
		return bad("gossip interval %v is negative", c.GossipInterval)
	}
	return nil
}

// withDefaults returns c with every zero value replaced by its default.
func (c Config) withDefaults() Config {
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	if c.PeerDiscovery == nil {
		on := true
		c.PeerDiscovery = &on
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProbeFailures == 0 {
		c.ProbeFailures = DefaultProbeFailures
	}
	if c.QueueLen == 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.SnapshotTimeout == 0 {
		c.SnapshotTimeout = DefaultSnapshotTimeout
	}
	if c.GossipInterval == 0 {
		c.GossipInterval = DefaultGossipInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Peers = append([]string(nil), c.Peers...)
	if c.Password != nil {
		c.Password = append([]byte(nil), c.Password...)
	}
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
