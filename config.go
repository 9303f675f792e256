package meshkv

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/meshkv/meshkv/internal/listen"
	"github.com/meshkv/meshkv/kvapi"
	"github.com/meshkv/meshkv/meshtransport"
)

// Config configures a node. The zero value is a working single node with no
// TCP listener; every field documents what its zero value means.
type Config struct {
	// Name is the member's human-readable name (default "default", as etcd).
	Name string

	// ListenClientURLs are the URLs to serve etcd's gRPC API on, such as
	// "http://127.0.0.1:2379". Empty means no TCP listener: the node is then
	// reachable only through Node.Client. Port 0 picks a free port; see
	// Node.ClientAddrs.
	ListenClientURLs []string
	// AdvertiseClientURLs are the client URLs this member announces to clients
	// (Cluster.MemberList). Empty means the actual listen addresses.
	AdvertiseClientURLs []string

	// MaxRequestBytes limits a write request's size (default 1.5 MiB, as etcd).
	MaxRequestBytes int
	// MaxTxnOps limits each operation list of a Txn (default 128, as etcd).
	MaxTxnOps int
	// QuotaBytes is the store size above which writes are refused with
	// etcd's "database space exceeded" (default 2 GiB, as etcd's
	// --quota-backend-bytes).
	QuotaBytes int64

	// TickInterval is the raft tick, etcd's heartbeat interval (default 100ms).
	TickInterval time.Duration
	// ElectionTimeout is the raft election timeout (default 1s, as etcd); it
	// must be a multiple of TickInterval of at least 2.
	ElectionTimeout time.Duration
	// SnapshotCount is the number of applied entries after which the raft log
	// is compacted into a snapshot (default 10000).
	SnapshotCount uint64

	// MeshListen is the HOST:PORT the mesh (peer) network listens on. Empty
	// means no mesh: a standalone single node. The binary's default is
	// 127.0.0.1:2380, etcd's peer port.
	MeshListen string
	// Peers are mesh addresses (HOST:PORT) to connect to at start.
	Peers []string
	// DisablePeerDiscovery makes the mesh connect only to Peers, not to peers
	// it learns about from them (false: discover, the default).
	DisablePeerDiscovery bool
	// ClusterName groups nodes on one mesh into one cluster (default "meshkv").
	ClusterName string
	// InitialClusterSize is how many nodes of ClusterName must meet before
	// they form a cluster (default 1: a node with no peers forms one alone).
	// Nodes that arrive after a cluster exists join it.
	InitialClusterSize int
	// TargetVoters is the number of voting members the leader promotes
	// learners up to (default 3; 1, 3, 5 or 7).
	TargetVoters int
	// DeadMemberTimeout is how long the mesh must report a member gone before
	// the leader removes it (and promotes a learner in its place) (default 15s).
	DeadMemberTimeout time.Duration
	// LeaveTimeout bounds the graceful leave in Close: handing leadership
	// over and waiting to be removed (default 3s).
	LeaveTimeout time.Duration
	// AutoCompactionMode and AutoCompactionRetention bound the MVCC history
	// as etcd's flags of the same names do: mode "periodic" with a duration
	// ("30m") or a number of hours, or "revision" with a number of revisions.
	// Empty or "0" retention: no automatic compaction.
	AutoCompactionMode      string
	AutoCompactionRetention string
	// MeshPassword is the cluster secret (the contents of a password file):
	// only nodes holding it can link to this one. Peer links are always
	// encrypted; without a password anyone who reaches MeshListen is
	// admitted. An empty password is refused.
	MeshPassword []byte
	// MeshInsecureAllowAnyone must be set to run without MeshPassword while
	// MeshListen reaches beyond loopback: anyone who can reach the port then
	// joins the cluster and can read and change all its data. A warning is
	// logged at every start.
	MeshInsecureAllowAnyone bool

	// InitialSnapshot is the path of an etcd v3 snapshot file to found the
	// cluster with: `etcdctl snapshot save`'s output from meshkv or etcd, or
	// an etcd member's member/snap/db (which has no sha256 trailer). The
	// cluster starts with every key of the file (with its create and mod
	// revisions and version), its current and compact revisions and its
	// leases (TTLs and attached keys). Only a node that founds the cluster
	// alone may have it (InitialClusterSize 1): members that join later
	// receive the state through raft. A node that finds an existing cluster
	// of its name instead stops with ErrInitialSnapshotJoin. Empty: start
	// empty.
	InitialSnapshot string

	// Client security: TLS, mutual TLS and etcd's authentication. See
	// node_client.go and the README's "Client security" section.

	// ClientTLS serves the https:// and unixs:// client URLs (and the TLS
	// side of an address named by both an http:// and an https:// URL,
	// which share one port). Required when there is such a URL; nil
	// otherwise. Any *tls.Config works; the binary builds one from etcd's
	// flags that reloads the certificate, CA and CRL files when they change.
	ClientTLS *tls.Config
	// ClientCertAuth makes the common name of a TLS client's verified
	// certificate the user of its requests that carry no token, while
	// authentication is enabled (etcd's --client-cert-auth). ClientTLS
	// should then require and verify client certificates: unverified ones
	// never name a user.
	ClientCertAuth bool
	// AuthToken is etcd's --auth-token: "simple" (the default: random
	// tokens every member knows), "jwt,pub-key=FILE,priv-key=FILE,
	// sign-method=METHOD[,ttl=DURATION]" (signed tokens), or "none" (no
	// tokens: users are known by their certificates only).
	AuthToken string
	// AuthTokenTTL is how long a simple token lives after its last use
	// (default 300s, etcd's --auth-token-ttl).
	AuthTokenTTL time.Duration
	// BcryptCost is the cost of the password hashes (default 10, etcd's
	// --bcrypt-cost; 4 to 31).
	BcryptCost int

	// ListenMetricsURLs are extra http://host:port URLs that serve only
	// /metrics and the health endpoints (etcd's --listen-metrics-urls). The
	// client URLs serve them too.
	ListenMetricsURLs []string
	// Metrics is "basic" (the default) or "extensive", which adds gRPC
	// handling-time histograms (etcd's --metrics).
	Metrics string
	// EnablePprof serves Go's profiler at /debug/pprof/ on the client URLs
	// (etcd's --enable-pprof).
	EnablePprof bool

	// GRPCKeepAliveMinTime is the shortest interval at which a client may
	// ping; a client that pings more often is disconnected (default 5s, as
	// etcd's --grpc-keepalive-min-time; negative: gRPC's own 5 minutes).
	GRPCKeepAliveMinTime time.Duration
	// GRPCKeepAliveInterval is how often the server pings an idle client
	// connection, and GRPCKeepAliveTimeout how long it waits for the answer
	// before closing it (defaults 2h and 20s, as etcd's flags; negative:
	// gRPC's defaults).
	GRPCKeepAliveInterval time.Duration
	GRPCKeepAliveTimeout  time.Duration
	// MaxConcurrentStreams bounds the concurrent streams (calls) of one
	// client connection (0: unlimited, as etcd's default).
	MaxConcurrentStreams uint32
	// WatchProgressNotifyInterval is how often a watcher that asked for
	// progress notifications gets one (default 10m, as etcd's
	// --watch-progress-notify-interval).
	WatchProgressNotifyInterval time.Duration

	// Logger receives the node's logs (nil = discard).
	Logger *slog.Logger

	// test holds settings only this package's tests use (nil: none).
	test *testHooks
}

// Defaults, as etcd's where etcd has one.
const (
	DefaultName            = "default"
	DefaultTickInterval    = 100 * time.Millisecond
	DefaultElectionTimeout = time.Second
	DefaultSnapshotCount   = 10000
	DefaultClusterName     = "meshkv"
	DefaultTargetVoters    = 3
	DefaultDeadMember      = 15 * time.Second
	DefaultLeaveTimeout    = 3 * time.Second

	DefaultGRPCKeepAliveMinTime  = 5 * time.Second
	DefaultGRPCKeepAliveInterval = 2 * time.Hour
	DefaultGRPCKeepAliveTimeout  = 20 * time.Second
)

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("meshkv: invalid config")

// Validate reports the first setting that cannot work. It changes nothing.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if err := c.validateClientAccess(); err != nil {
		return bad("%v", err)
	}
	if c.MaxRequestBytes < 0 || c.MaxTxnOps < 0 || c.QuotaBytes < 0 {
		return bad("negative request limits")
	}
	if c.TickInterval < 0 || c.ElectionTimeout < 0 {
		return bad("negative raft timing")
	}
	if c.DeadMemberTimeout < 0 || c.LeaveTimeout < 0 {
		return bad("negative membership timeouts")
	}
	if _, err := kvapi.ParseAutoCompaction(c.AutoCompactionMode, c.AutoCompactionRetention); err != nil {
		return bad("%v", err)
	}
	if c.InitialClusterSize < 0 {
		return bad("negative initial cluster size")
	}
	if c.InitialSnapshot != "" && c.InitialClusterSize > 1 {
		return bad("an initial snapshot needs initial cluster size 1: one node founds the cluster from the file and the others join it")
	}
	switch c.TargetVoters {
	case 0, 1, 3, 5, 7:
	default:
		return bad("target voters %d: want 1, 3, 5 or 7", c.TargetVoters)
	}
	for _, s := range c.ListenMetricsURLs {
		u, err := listen.ParseURL(s)
		if err != nil {
			return bad("listen metrics URL %q: %v", s, err)
		}
		if u.Secure() && c.ClientTLS == nil {
			return bad("listen metrics URL %q: https needs the client TLS configuration (--cert-file, --key-file), as in etcd", s)
		}
	}
	switch c.Metrics {
	case "", "basic", "extensive":
	default:
		return bad("metrics %q: want basic or extensive", c.Metrics)
	}
	if c.WatchProgressNotifyInterval < 0 {
		return bad("negative watch progress notify interval")
	}
	if c.MeshPassword != nil && len(c.MeshPassword) == 0 {
		return bad("empty mesh password (it would admit nobody)")
	}
	if c.MeshListen != "" && c.MeshPassword == nil && !c.MeshInsecureAllowAnyone && !meshtransport.LoopbackOnly(c.MeshListen) {
		return bad("mesh listen address %s reaches beyond loopback: set a mesh password, or allow anyone explicitly (MeshInsecureAllowAnyone, --mesh-insecure-allow-anyone)", c.MeshListen)
	}
	if c.MeshListen == "" && (len(c.Peers) > 0 || c.InitialClusterSize > 1) {
		return bad("peers or an initial cluster size need a mesh listen address")
	}
	if c.MeshListen != "" {
		if _, _, err := net.SplitHostPort(c.MeshListen); err != nil {
			return bad("mesh listen address %q: %v", c.MeshListen, err)
		}
	}
	for _, p := range c.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return bad("peer %q: want HOST:PORT", p)
		}
	}
	c = c.withDefaults()
	if c.ElectionTimeout < 2*c.TickInterval {
		return bad("election timeout %v must be at least twice the tick interval %v", c.ElectionTimeout, c.TickInterval)
	}
	return kvapi.Config{MaxRequestBytes: c.MaxRequestBytes, MaxTxnOps: c.MaxTxnOps}.Validate()
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.SnapshotCount == 0 {
		c.SnapshotCount = DefaultSnapshotCount
	}
	if c.ClusterName == "" {
		c.ClusterName = DefaultClusterName
	}
	if c.InitialClusterSize == 0 {
		c.InitialClusterSize = 1
	}
	if c.TargetVoters == 0 {
		c.TargetVoters = DefaultTargetVoters
	}
	if c.DeadMemberTimeout == 0 {
		c.DeadMemberTimeout = DefaultDeadMember
	}
	if c.LeaveTimeout == 0 {
		c.LeaveTimeout = DefaultLeaveTimeout
	}
	if c.GRPCKeepAliveMinTime == 0 {
		c.GRPCKeepAliveMinTime = DefaultGRPCKeepAliveMinTime
	}
	if c.GRPCKeepAliveInterval == 0 {
		c.GRPCKeepAliveInterval = DefaultGRPCKeepAliveInterval
	}
	if c.GRPCKeepAliveTimeout == 0 {
		c.GRPCKeepAliveTimeout = DefaultGRPCKeepAliveTimeout
	}
	if c.Metrics == "" {
		c.Metrics = "basic"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
