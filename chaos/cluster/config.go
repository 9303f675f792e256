package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Defaults for chaos runs.
const (
	DefaultNodes = 3
	// DefaultHeartbeat and DefaultElectionTimeout are the raft timing of
	// proxy-mode runs: short, so that faults play out in seconds.
	DefaultHeartbeat       = 50 * time.Millisecond
	DefaultElectionTimeout = 500 * time.Millisecond
	// NetnsHeartbeat and NetnsElectionTimeout are the raft timing of
	// netns-mode runs: the meshkv binary's own defaults (and etcd's
	// election timeout of 1 s), so that kernel-level results read in the
	// units production runs with.
	NetnsHeartbeat       = 100 * time.Millisecond
	NetnsElectionTimeout = time.Second
	DefaultClusterName   = "chaos"
	DefaultLogLevel      = "info"
	// MaxMembers bounds how many members one cluster can ever start,
	// replacements included (netns mode numbers its addresses by member).
	MaxMembers = 60
)

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("cluster: invalid config")

// Net is how the members are connected and how their links are cut.
type Net int

// Network modes.
const (
	// Proxy runs every member on loopback; member i reaches member j only
	// through a user-space TCP proxy of its own (internal/netproxy). No
	// root needed; the members' sockets never see loss.
	Proxy Net = iota + 1
	// Netns runs every member in its own network namespace, with a veth pair
	// per member pair and one to the root namespace for clients; links are
	// cut in the kernel, so the members' own TCP stacks see the loss,
	// retransmission backoff and half-open connections. Needs root.
	Netns
)

func (n Net) String() string {
	switch n {
	case Proxy:
		return "proxy"
	case Netns:
		return "netns"
	}
	return fmt.Sprintf("Net(%d)", int(n))
}

// ParseNet parses the String form of a Net.
func ParseNet(s string) (Net, error) {
	for _, n := range []Net{Proxy, Netns} {
		if n.String() == s {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: network mode %q (want proxy or netns)", ErrInvalidConfig, s)
}

// Flavor is the server software the cluster runs.
type Flavor int

// Flavors.
const (
	// Meshkv runs meshkv members that find each other over the mesh.
	Meshkv Flavor = iota + 1
	// Etcd runs an etcd cluster bootstrapped from a static
	// --initial-cluster (netns mode only: etcd advertises one peer URL per
	// member, which leaves no room for a proxy per link).
	Etcd
)

func (f Flavor) String() string {
	switch f {
	case Meshkv:
		return "meshkv"
	case Etcd:
		return "etcd"
	}
	return fmt.Sprintf("Flavor(%d)", int(f))
}

// ParseFlavor parses the String form of a Flavor.
func ParseFlavor(s string) (Flavor, error) {
	for _, f := range []Flavor{Meshkv, Etcd} {
		if f.String() == s {
			return f, nil
		}
	}
	return 0, fmt.Errorf("%w: flavor %q (want meshkv or etcd)", ErrInvalidConfig, s)
}

// Config says which cluster to start. Zero values mean the documented
// defaults.
type Config struct {
	// Binary is the path of the server binary: meshkv, or etcd for the etcd
	// flavor (required).
	Binary string
	// Flavor is the server software (zero: Meshkv).
	Flavor Flavor
	// Net is the network mode (zero: Proxy).
	Net Net
	// Nodes is the number of nodes started together; they form the cluster
	// (--initial-cluster-size, or etcd's --initial-cluster). Zero means 3.
	Nodes int
	// TargetVoters is passed as --target-voters (1, 3, 5 or 7). Zero leaves
	// the binary's default (3). Every etcd member is a voter.
	TargetVoters int
	// Heartbeat and ElectionTimeout are the raft timing (zero: 50 ms and
	// 500 ms in proxy mode, 100 ms and 1 s in netns mode).
	Heartbeat       time.Duration
	ElectionTimeout time.Duration
	// ClusterName is --cluster-name, and etcd's --initial-cluster-token
	// prefix (zero: "chaos").
	ClusterName string
	// LogLevel is the nodes' --log-level (zero: "info").
	LogLevel string
	// Dir receives one log file per node. Empty means a temporary directory
	// that Close removes; a given directory is left in place.
	Dir string
	// ExtraArgs are appended to every node's command line.
	ExtraArgs []string
	// Starve says how Cluster.Starve saturates a member's CPU (zero:
	// StarveQuota).
	Starve StarveMethod
	// Logger receives the cluster's own events: starts, cuts, heals, kills
	// (nil = discard).
	Logger *slog.Logger
}

// Validate reports the first setting that cannot work. It changes nothing.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Binary == "" {
		return bad("no server binary given")
	}
	if st, err := os.Stat(c.Binary); err != nil {
		return bad("server binary: %v", err)
	} else if st.IsDir() || st.Mode()&0o111 == 0 {
		return bad("server binary %s is not an executable file", c.Binary)
	}
	switch c.Flavor {
	case 0, Meshkv, Etcd:
	default:
		return bad("unknown flavor %d", int(c.Flavor))
	}
	switch c.Net {
	case 0, Proxy, Netns:
	default:
		return bad("unknown network mode %d", int(c.Net))
	}
	d := c.withDefaults()
	if d.Flavor == Etcd && d.Net != Netns {
		return bad("the etcd flavor needs the netns network mode (etcd advertises one peer URL per member, so links cannot be cut by per-link proxies)")
	}
	if c.Nodes < 0 || c.Nodes > 15 {
		return bad("nodes %d: want 1 to 15", c.Nodes)
	}
	switch c.TargetVoters {
	case 0, 1, 3, 5, 7:
	default:
		return bad("target voters %d: want 1, 3, 5 or 7", c.TargetVoters)
	}
	if c.Heartbeat < 0 || c.ElectionTimeout < 0 {
		return bad("negative raft timing")
	}
	if d.Heartbeat%time.Millisecond != 0 || d.ElectionTimeout%time.Millisecond != 0 {
		return bad("raft timing must be whole milliseconds")
	}
	if d.ElectionTimeout < 2*d.Heartbeat {
		return bad("election timeout %v must be at least twice the heartbeat %v", d.ElectionTimeout, d.Heartbeat)
	}
	switch d.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("log level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.Starve {
	case 0, StarvePin, StarveQuota:
	default:
		return bad("unknown starvation method %d", int(c.Starve))
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Flavor == 0 {
		c.Flavor = Meshkv
	}
	if c.Net == 0 {
		c.Net = Proxy
	}
	if c.Nodes == 0 {
		c.Nodes = DefaultNodes
	}
	hb, et := DefaultTimingFor(c.Net)
	if c.Heartbeat == 0 {
		c.Heartbeat = hb
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = et
	}
	if c.ClusterName == "" {
		c.ClusterName = DefaultClusterName
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.Starve == 0 {
		c.Starve = StarveQuota
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// DefaultTimingFor is the default heartbeat and election timeout of a
// network mode.
func DefaultTimingFor(n Net) (heartbeat, election time.Duration) {
	if n == Netns {
		return NetnsHeartbeat, NetnsElectionTimeout
	}
	return DefaultHeartbeat, DefaultElectionTimeout
}
