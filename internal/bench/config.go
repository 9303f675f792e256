package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Workload names a kind of load.
type Workload string

// The workloads. Each one's operation is what one latency sample measures.
const (
	// Put writes a random key of the key space.
	Put Workload = "put"
	// Get reads a random key (linearizable, or serializable with
	// Config.Serializable). The key space is written first.
	Get Workload = "get"
	// Txn is a compare-and-swap on a random key: read its mod revision, then
	// a Txn that puts a new value if the mod revision is unchanged. A failed
	// compare counts as a conflict, not an operation.
	Txn Workload = "txn"
	// Lock acquires and releases an etcd lock (clientv3/concurrency.Mutex)
	// on one of Config.Locks names; each worker holds its own session.
	Lock Workload = "lock"
	// Lease grants a lease, keeps it alive once and revokes it.
	Lease Workload = "lease"
	// Watch measures write-to-event latency: Config.Watchers watchers watch
	// one prefix while the workers put timestamps under it; each sample is
	// the time from just before a put to a watcher's receipt of its event.
	Watch Workload = "watch"
	// Mixed picks each operation from Config.Mix (get, put or txn).
	Mixed Workload = "mixed"
	// Load writes every key of the key space once, split among the workers,
	// and stops when done (Duration and Warmup do not apply). Failed puts
	// are counted; three in a row on one worker end the run with an error.
	Load Workload = "load"
	// Connect opens a fresh gRPC connection to one of Config.Endpoints (a
	// TLS handshake with Config.TLS), puts a random key over it and closes
	// it: the cost of a new client.
	Connect Workload = "connect"
)

// Workloads returns every workload, in the order of the help text.
func Workloads() []Workload {
	return []Workload{Put, Get, Txn, Lock, Lease, Watch, Mixed, Load, Connect}
}

// ParseWorkload returns the workload called s.
func ParseWorkload(s string) (Workload, error) {
	for _, w := range Workloads() {
		if string(w) == s {
			return w, nil
		}
	}
	return "", fmt.Errorf("%w: unknown workload %q (want one of %s)", ErrInvalidConfig, s, workloadList())
}

func workloadList() string {
	ws := Workloads()
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = string(w)
	}
	return strings.Join(names, ", ")
}

// Mix is the share of each operation in the mixed workload, as relative
// weights (they need not add up to 100).
type Mix struct {
	Get, Put, Txn int
}

// DefaultMix returns the default mix: 70% gets, 20% puts and 10% CAS
// transactions.
func DefaultMix() Mix { return Mix{Get: 70, Put: 20, Txn: 10} }

// String formats m as ParseMix reads it.
func (m Mix) String() string {
	return fmt.Sprintf("get:%d,put:%d,txn:%d", m.Get, m.Put, m.Txn)
}

func (m Mix) total() int { return m.Get + m.Put + m.Txn }

// ParseMix reads a mix such as "get:70,put:20,txn:10". Operations not named
// get weight 0.
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, num, ok := strings.Cut(part, ":")
		if !ok {
			return Mix{}, fmt.Errorf("%w: mix entry %q: want op:weight", ErrInvalidConfig, part)
		}
		w, err := strconv.Atoi(strings.TrimSpace(num))
		if err != nil || w < 0 {
			return Mix{}, fmt.Errorf("%w: mix entry %q: weight must be a non-negative integer", ErrInvalidConfig, part)
		}
		switch strings.TrimSpace(name) {
		case "get":
			m.Get = w
		case "put":
			m.Put = w
		case "txn":
			m.Txn = w
		default:
			return Mix{}, fmt.Errorf("%w: mix entry %q: operation must be get, put or txn", ErrInvalidConfig, part)
		}
	}
	if m.total() == 0 {
		return Mix{}, fmt.Errorf("%w: mix %q has no operation with a positive weight", ErrInvalidConfig, s)
	}
	return m, nil
}

// Config describes one benchmark run. The zero value of every field means
// its default, given on the field.
type Config struct {
	// Workload is the load to generate (required).
	Workload Workload
	// Clients is the number of concurrent workers (default 1). For Watch
	// they are the writers.
	Clients int
	// Keys is the size of the key space (default 10000).
	Keys int
	// ValueSize is the size of written values in bytes (default 256). Watch
	// values are at least 24 bytes: they carry a timestamp.
	ValueSize int
	// Duration is the measured window (default 10s).
	Duration time.Duration
	// Warmup runs the workload before the measured window without
	// recording it (zero: no warmup).
	Warmup time.Duration
	// Serializable makes gets serializable (local) reads instead of
	// linearizable ones.
	Serializable bool
	// Locks is the number of lock names of the Lock workload (default 8).
	Locks int
	// Watchers is the number of watchers of the Watch workload (default 10).
	Watchers int
	// Mix is the operation mix of the Mixed workload (default DefaultMix()).
	Mix Mix
	// Rate caps the total operations started per second over all workers
	// (zero: as fast as the workers go).
	Rate float64
	// LeaseTTL is the TTL of leases and lock sessions (default 10s; whole
	// seconds, at least 1s).
	LeaseTTL time.Duration
	// OpTimeout bounds each operation (default 10s).
	OpTimeout time.Duration
	// KeyPrefix is put before every key the run writes (default "bench/").
	KeyPrefix string
	// SkipPreload skips writing the key space before Get, Txn and Mixed
	// runs (default: write it, so that reads find values).
	SkipPreload bool
	// Seed seeds the workers' random choices (zero: 1, so runs repeat).
	Seed uint64
	// CPUPIDs are server processes whose CPU time (user+system, from
	// /proc/PID/stat) over the measured window is reported per operation.
	CPUPIDs []int
	// RSSPIDs are server processes whose resident memory (VmRSS) is summed
	// and reported at the end of the run.
	RSSPIDs []int
	// Progress receives a progress line per ProgressInterval while the run
	// goes (nil: no progress output).
	Progress io.Writer
	// ProgressInterval is the time between progress lines (default 1s).
	ProgressInterval time.Duration
	// Endpoints are the servers the Connect workload dials (host:port,
	// http(s)://host:port or unix(s)://path); the other workloads use the
	// clients given to Run.
	Endpoints []string
	// TLS secures the Connect workload's connections (nil: plaintext).
	TLS *tls.Config
	// ScrapeURLs are Prometheus endpoints (http://host:port/metrics) that
	// the run fetches, each every ScrapeInterval, from the start of the
	// warmup to the end of the window, reading every byte, as a Prometheus
	// server does: to measure what scraping costs the servers.
	ScrapeURLs []string
	// ScrapeInterval is the time between two scrapes of one URL (default
	// 1s).
	ScrapeInterval time.Duration
}

// Defaults.
const (
	DefaultClients          = 1
	DefaultKeys             = 10000
	DefaultValueSize        = 256
	DefaultDuration         = 10 * time.Second
	DefaultLocks            = 8
	DefaultWatchers         = 10
	DefaultLeaseTTL         = 10 * time.Second
	DefaultOpTimeout        = 10 * time.Second
	DefaultKeyPrefix        = "bench/"
	DefaultProgressInterval = time.Second
	DefaultScrapeInterval   = time.Second
)

// minWatchValue is the smallest value of the Watch workload: a timestamp.
const minWatchValue = 24

// ErrInvalidConfig is wrapped by every error about a configuration.
var ErrInvalidConfig = errors.New("bench: invalid config")

// Validate reports the first setting that cannot work. It changes nothing.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Workload == "" {
		return bad("no workload (want one of %s)", workloadList())
	}
	if _, err := ParseWorkload(string(c.Workload)); err != nil {
		return err
	}
	switch {
	case c.Clients < 0:
		return bad("clients %d is negative", c.Clients)
	case c.Keys < 0:
		return bad("keys %d is negative", c.Keys)
	case c.ValueSize < 0:
		return bad("value size %d is negative", c.ValueSize)
	case c.Duration < 0 || c.Warmup < 0:
		return bad("negative duration or warmup")
	case c.Locks < 0:
		return bad("locks %d is negative", c.Locks)
	case c.Watchers < 0:
		return bad("watchers %d is negative", c.Watchers)
	case c.Rate < 0:
		return bad("rate %v is negative", c.Rate)
	case c.LeaseTTL < 0 || c.LeaseTTL%time.Second != 0:
		return bad("lease TTL %v: want a positive whole number of seconds", c.LeaseTTL)
	case c.OpTimeout < 0 || c.ProgressInterval < 0 || c.ScrapeInterval < 0:
		return bad("negative op timeout, progress or scrape interval")
	case c.Mix.Get < 0 || c.Mix.Put < 0 || c.Mix.Txn < 0:
		return bad("negative mix weight in %v", c.Mix)
	}
	if c.Workload == Connect && len(c.Endpoints) == 0 {
		return bad("the connect workload needs endpoints")
	}
	for _, u := range c.ScrapeURLs {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return bad("scrape URL %q: want http://host:port/path", u)
		}
	}
	for _, p := range append(append([]int(nil), c.CPUPIDs...), c.RSSPIDs...) {
		if p <= 0 {
			return bad("pid %d is not a process id", p)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Clients == 0 {
		c.Clients = DefaultClients
	}
	if c.Keys == 0 {
		c.Keys = DefaultKeys
	}
	if c.ValueSize == 0 {
		c.ValueSize = DefaultValueSize
	}
	if c.Workload == Watch && c.ValueSize < minWatchValue {
		c.ValueSize = minWatchValue
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Locks == 0 {
		c.Locks = DefaultLocks
	}
	if c.Watchers == 0 {
		c.Watchers = DefaultWatchers
	}
	if c.Mix.total() == 0 {
		c.Mix = DefaultMix()
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = DefaultOpTimeout
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.ScrapeInterval == 0 {
		c.ScrapeInterval = DefaultScrapeInterval
	}
	return c
}
