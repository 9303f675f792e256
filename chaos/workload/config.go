package workload

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults.
const (
	DefaultKeys           = 8
	DefaultMultiClients   = 2
	DefaultLockWorkers    = 3
	DefaultOpTimeout      = time.Second
	DefaultPause          = 15 * time.Millisecond
	DefaultSessionTTL     = 3
	DefaultKeyPrefix      = "chaos/kv/"
	DefaultLockPrefix     = "chaos/lock"
	DefaultLockCounterKey = "chaos/locked-counter"
)

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("workload: invalid config")

// Config shapes the workload. Zero values mean the documented defaults.
type Config struct {
	// Endpoints are the client URLs of the nodes (required).
	Endpoints []string
	// Keys is how many keys the key-value workers share (zero: 8).
	Keys int
	// MultiClients is the number of key-value workers whose client balances
	// over every endpoint (zero: 2; negative: none).
	MultiClients int
	// LockWorkers is the number of lock workers (zero: 3; negative: none).
	LockWorkers int
	// NoWatch turns the watcher off.
	NoWatch bool
	// OpTimeout bounds each client call (zero: 1s).
	OpTimeout time.Duration
	// Pause is the wait between two operations of one worker (zero: 15ms),
	// to leave CPU to the cluster.
	Pause time.Duration
	// SessionTTL is the lock sessions' lease TTL in seconds (zero: 3).
	SessionTTL int
	// SerializableReads makes the key-value workers read with serializable
	// (local, possibly stale) Gets. It exists for the harness's self-test:
	// under a partition the linearizability check must then fail.
	SerializableReads bool
	// Seed seeds the workers' random choices.
	Seed int64
	// Logger receives the workload's notable events (nil = discard).
	Logger *slog.Logger
}

// Validate reports the first setting that cannot work. It changes nothing.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return fmt.Errorf("%w: no endpoints", ErrInvalidConfig)
	}
	if c.Keys < 0 || c.OpTimeout < 0 || c.Pause < 0 || c.SessionTTL < 0 {
		return fmt.Errorf("%w: negative keys, timeout, pause or TTL", ErrInvalidConfig)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Keys == 0 {
		c.Keys = DefaultKeys
	}
	switch {
	case c.MultiClients == 0:
		c.MultiClients = DefaultMultiClients
	case c.MultiClients < 0:
		c.MultiClients = 0
	}
	switch {
	case c.LockWorkers == 0:
		c.LockWorkers = DefaultLockWorkers
	case c.LockWorkers < 0:
		c.LockWorkers = 0
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = DefaultOpTimeout
	}
	if c.Pause == 0 {
		c.Pause = DefaultPause
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
