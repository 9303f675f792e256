package meshtransport

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/meshkv/meshkv/internal/peerlink"
)

// Defaults for the zero values of Config.
const (
	DefaultListenAddr      = "127.0.0.1:2380"
	DefaultProbeInterval   = 100 * time.Millisecond
	DefaultProbeFailures   = 4
	DefaultQueueLen        = 4096
	DefaultSnapshotTimeout = 10 * time.Second
	DefaultGossipInterval  = time.Second
	DefaultRefreshInterval = 5 * time.Second
	DefaultEntryTTL        = 30 * time.Second
	DefaultMaxTransfer     = 1 << 30
	DefaultMaxPeers        = 1024
	DefaultNoLinkLogEvery  = 10 * time.Second
)

// Sizes on the wire.
const (
	// MaxFrame is the largest frame (a datagram on a link, or the
	// plaintext of a sealed mesh unicast).
	MaxFrame = 1 << 20
	// ChunkSize is the payload of one chunk of a large message. A message
	// larger than this, and every MsgSnap, is sent in chunks.
	ChunkSize = 512 << 10
)

// Errors returned by this package.
var (
	// ErrInvalidConfig is wrapped by every Config.Validate error.
	ErrInvalidConfig = errors.New("meshtransport: invalid config")
	// ErrInsecure is wrapped by the Validate error of a Config whose link
	// listener reaches beyond loopback with no Password and without
	// InsecureAllowAnyone.
	ErrInsecure = errors.New("meshtransport: refusing to listen beyond loopback without a mesh password")
	// ErrBind is returned by Start when an address cannot be bound.
	ErrBind = errors.New("meshtransport: cannot bind listen address")
	// ErrStopped is returned after Close.
	ErrStopped = errors.New("meshtransport: stopped")
	// ErrStarted is returned by a second Start.
	ErrStarted = errors.New("meshtransport: already started")
	// ErrUnknownMember is returned by SendMember for a raft id the
	// transport has never seen (no link, no gossip entry).
	ErrUnknownMember = errors.New("meshtransport: unknown member")
	// ErrQueueFull is returned by SendMember when the destination's
	// control queue is full.
	ErrQueueFull = errors.New("meshtransport: queue full")
)

// Config configures a Transport. Every zero value means the documented
// default; Validate reports nonsense and changes nothing.
type Config struct {
	// ListenAddr is the HOST:PORT peer links listen on (the public mesh
	// port); default "127.0.0.1:2380". Port 0 picks a free port at Start
	// (see Transport.Addr).
	ListenAddr string
	// AdvertiseAddr is where peers should dial us, announced on links and
	// in our gossip entry; default ListenAddr when it names a specific
	// host (with the actual port).
	AdvertiseAddr string
	// Peers are HOST:PORT link addresses to keep links to.
	Peers []string
	// PeerDiscovery: nil means true: also keep links to the advertised
	// addresses of the live (non-expired) gossip entries of our cluster.
	// False links only to Peers, which lets tests and chaos runs build
	// partial topologies.
	PeerDiscovery *bool
	// Password is the cluster secret (the bytes of a password file): only
	// nodes holding it can link to us. nil is insecure mode: anyone who
	// reaches ListenAddr is admitted. A non-nil password must not be empty.
	Password []byte
	// InsecureAllowAnyone must be set to run without a Password while
	// ListenAddr reaches beyond loopback; the transport then logs a warning
	// at every start.
	InsecureAllowAnyone bool
	// Identity holds this process's keys; nil makes fresh ones. The raft id
	// is derived from it (Transport.RaftID).
	Identity *Identity
	// NickName is a human name for logs and Peer.NickName.
	NickName string
	// ClusterName must be equal on both ends of a link; default "".
	ClusterName string

	// ProbeInterval is the time between sealed probes to each peer that
	// is reachable only through other peers; default 100ms.
	ProbeInterval time.Duration
	// ProbeFailures is the number of consecutive unanswered probes after
	// which such a peer counts as dead; default 4.
	ProbeFailures int
	// QueueLen bounds each destination's queue of raft messages waiting for
	// the relayed path (in messages); default 4096.
	QueueLen int
	// SnapshotTimeout: a chunked transfer fails when the receiver
	// acknowledges no progress for this long, and the receiver drops an
	// incomplete transfer idle for this long; default 10s.
	SnapshotTimeout time.Duration
	// MaxTransfer is the largest message (snapshot) accepted in chunks from
	// one peer; default 1 GiB. Reassembly holds at most one transfer per
	// peer and 2*MaxTransfer bytes over all peers.
	MaxTransfer int64
	// GossipInterval is how often mesh gossips full metadata and topology
	// to random neighbours (changes are broadcast at once); default 1s.
	GossipInterval time.Duration
	// RefreshInterval is how often our gossip entry is re-signed with a new
	// version even if unchanged; default 5s.
	RefreshInterval time.Duration
	// EntryTTL: a gossip entry not refreshed for this long expires (it is
	// removed, its address no longer dialled); default 30s. It must exceed
	// RefreshInterval.
	EntryTTL time.Duration
	// MaxPeers bounds the peers (gossip entries and links) tracked; default
	// 1024.
	MaxPeers int
	// NoLinkLogEvery is how often a configured peer we have no link to is
	// reported in the log (with the reason); default 10s.
	NoLinkLogEvery time.Duration
	// Link tunes the peer links; zero values are peerlink's defaults.
	// ListenAddr, AdvertiseAddr, Identity, ClusterSecret, ClusterName,
	// AppHello, Handler, Authorize and Logger are set by the transport.
	Link peerlink.Config

	// Fabric replaces the network the transport runs on (peer links and
	// the mesh router); nil means the real one (TCP links, a mesh router
	// on loopback). Package meshtransporttest provides an in-memory one.
	Fabric Fabric
	// Logger receives state changes (links, paths, refused peers) and
	// mesh's own log at debug level. nil discards.
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
	if c.AdvertiseAddr != "" {
		host, port, err := splitHostPort(c.AdvertiseAddr)
		if err != nil || host == "" || port == 0 {
			return bad("advertise address %q: want HOST:PORT with a non-zero port", c.AdvertiseAddr)
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
		return bad("password is empty (it would admit nobody); nil means no password")
	}
	if c.Password == nil && !c.InsecureAllowAnyone && c.Fabric == nil {
		listen := c.ListenAddr
		if listen == "" {
			listen = DefaultListenAddr
		}
		if !LoopbackOnly(listen) {
			return fmt.Errorf("%w: %w: %s reaches beyond loopback; give a password, or allow anyone explicitly", ErrInvalidConfig, ErrInsecure, listen)
		}
	}
	for name, d := range map[string]time.Duration{
		"probe interval": c.ProbeInterval, "snapshot timeout": c.SnapshotTimeout, "gossip interval": c.GossipInterval,
		"refresh interval": c.RefreshInterval, "entry ttl": c.EntryTTL, "no-link log interval": c.NoLinkLogEvery,
	} {
		if d < 0 {
			return bad("%s %v is negative", name, d)
		}
	}
	for name, v := range map[string]int{"probe failures": c.ProbeFailures, "queue length": c.QueueLen, "max peers": c.MaxPeers} {
		if v < 0 {
			return bad("%s %d is negative", name, v)
		}
	}
	if c.MaxTransfer < 0 {
		return bad("max transfer %d is negative", c.MaxTransfer)
	}
	d := c.withDefaults()
	if d.EntryTTL <= d.RefreshInterval {
		return bad("entry ttl %v must exceed the refresh interval %v", d.EntryTTL, d.RefreshInterval)
	}
	if len(c.ClusterName) > peerlink.MaxClusterName {
		return bad("cluster name longer than %d bytes", peerlink.MaxClusterName)
	}
	if len(c.NickName) > maxNickName {
		return bad("nick name longer than %d bytes", maxNickName)
	}
	return nil
}

// LoopbackOnly reports whether a listener on addr (HOST:PORT) is reachable
// from this host only: its host is "localhost" or a loopback IP. An empty
// host, an unspecified address or any other name reaches beyond loopback.
func LoopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
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
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setDur(&c.ProbeInterval, DefaultProbeInterval)
	setDur(&c.SnapshotTimeout, DefaultSnapshotTimeout)
	setDur(&c.GossipInterval, DefaultGossipInterval)
	setDur(&c.RefreshInterval, DefaultRefreshInterval)
	setDur(&c.EntryTTL, DefaultEntryTTL)
	setDur(&c.NoLinkLogEvery, DefaultNoLinkLogEvery)
	if c.ProbeFailures == 0 {
		c.ProbeFailures = DefaultProbeFailures
	}
	if c.QueueLen == 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.MaxTransfer == 0 {
		c.MaxTransfer = DefaultMaxTransfer
	}
	if c.MaxPeers == 0 {
		c.MaxPeers = DefaultMaxPeers
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
