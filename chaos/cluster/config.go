package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Defaults for chaos runs: short raft timing so that faults play out in
// seconds.
const (
	DefaultNodes           = 3
	DefaultHeartbeat       = 50 * time.Millisecond
	DefaultElectionTimeout = 500 * time.Millisecond
	DefaultClusterName     = "chaos"
	DefaultLogLevel        = "info"
)

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("cluster: invalid config")

// Config says which cluster to start. Zero values mean the documented
// defaults.
type Config struct {
	// Binary is the path of the meshkv binary (required).
	Binary string
	// Nodes is the number of nodes started together; they form the cluster
	// (--initial-cluster-size). Zero means 3.
	Nodes int
	// TargetVoters is passed as --target-voters (1, 3, 5 or 7). Zero leaves
	// the binary's default (3).
	TargetVoters int
	// Heartbeat and ElectionTimeout are the raft timing (zero: 50 ms and
	// 500 ms).
	Heartbeat       time.Duration
	ElectionTimeout time.Duration
	// ClusterName is --cluster-name (zero: "chaos").
	ClusterName string
	// LogLevel is the nodes' --log-level (zero: "info").
	LogLevel string
	// Dir receives one log file per node. Empty means a temporary directory
	// that Close removes; a given directory is left in place.
	Dir string
	// ExtraArgs are appended to every node's command line.
	ExtraArgs []string
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
		return bad("no meshkv binary given")
	}
	if st, err := os.Stat(c.Binary); err != nil {
		return bad("meshkv binary: %v", err)
	} else if st.IsDir() || st.Mode()&0o111 == 0 {
		return bad("meshkv binary %s is not an executable file", c.Binary)
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
	d := c.withDefaults()
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
	return nil
}

func (c Config) withDefaults() Config {
	if c.Nodes == 0 {
		c.Nodes = DefaultNodes
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.ClusterName == "" {
		c.ClusterName = DefaultClusterName
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
