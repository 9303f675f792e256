// Command meshkv-bench measures an etcd v3 API server (meshkv, or etcd itself,
// for comparison) through the standard etcd Go client: operations per second,
// latency quantiles, errors and, given the server processes' ids, their CPU
// time per operation and resident memory.
//
//	meshkv-bench put --endpoints 127.0.0.1:2379 --clients 256 --conns 16
//	meshkv-bench get --consistency s --clients 256 --json
//	meshkv-bench watch --watchers 100 --rate 200
//
// Run meshkv-bench --help for the workloads and flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshkv/meshkv/internal/bench"
	"github.com/meshkv/meshkv/internal/tlsconfig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed command line.
type options struct {
	cfg       bench.Config
	endpoints []string
	conns     int
	json      bool
	client    bench.ClientOptions
}

const usageHead = `Usage: meshkv-bench [flags] WORKLOAD [flags]

Generates load on etcd v3 API servers (meshkv or etcd) with the etcd Go client
and reports ops/s, latency p50/p90/p99/p99.9/max and errors. Only operations
that complete after the warmup and within --duration count. While it runs, a
progress line goes to stderr every second; the report goes to stdout.

Workloads:
  put     put a random key of --keys
  get     get a random key (--consistency l: linearizable, s: serializable);
          the key space is written first
  txn     compare-and-swap: get a key's mod revision, then Txn
          If(mod_revision == r) Then(Put); failed compares count as conflicts
  lock    acquire and release a lock (concurrency.Mutex) on one of --locks
          names; each client holds its own session
  lease   grant a lease, keep it alive once, revoke it
  watch   write-to-event latency: --watchers watchers watch a prefix while the
          clients put timestamps under it (use --rate to pace the writers)
  mixed   random get, put or txn by --mix (writes the key space first)
  load    write each key of --keys once, then stop (for memory use with
          --rss-pids)
  connect open a fresh connection (a full TLS handshake with TLS flags),
          put a random key over it, close it

Flags:
`

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("meshkv-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead)
		fs.PrintDefaults()
	}
	endpoints := fs.String("endpoints", "127.0.0.1:2379", "comma-separated client `addresses` (host:port, http(s)://host:port or unix(s)://path) of the servers")
	workload := fs.String("workload", "", "the `workload` (or give it as the first argument)")
	fs.IntVar(&o.cfg.Clients, "clients", bench.DefaultClients, "concurrent workers (watch: writers)")
	fs.IntVar(&o.conns, "conns", 1, "gRPC connections, shared round-robin by the workers")
	fs.IntVar(&o.cfg.Keys, "keys", bench.DefaultKeys, "size of the key space")
	fs.IntVar(&o.cfg.ValueSize, "value-size", bench.DefaultValueSize, "value size in `bytes` (watch: at least 24)")
	fs.DurationVar(&o.cfg.Duration, "duration", bench.DefaultDuration, "length of the measured window (not for load)")
	fs.DurationVar(&o.cfg.Warmup, "warmup", time.Second, "unmeasured run before the window (not for load)")
	consistency := fs.String("consistency", "l", "gets (get, txn's read, mixed): l linearizable, s serializable")
	fs.IntVar(&o.cfg.Locks, "locks", bench.DefaultLocks, "lock names of the lock workload")
	fs.IntVar(&o.cfg.Watchers, "watchers", bench.DefaultWatchers, "watchers of the watch workload, spread over the connections")
	mix := fs.String("mix", bench.DefaultMix().String(), "operation weights of the mixed workload")
	fs.Float64Var(&o.cfg.Rate, "rate", 0, "total operations started per second (0: unlimited)")
	fs.DurationVar(&o.cfg.LeaseTTL, "lease-ttl", bench.DefaultLeaseTTL, "TTL of leases and lock sessions (whole seconds)")
	fs.DurationVar(&o.cfg.OpTimeout, "op-timeout", bench.DefaultOpTimeout, "timeout of each operation")
	fs.StringVar(&o.cfg.KeyPrefix, "prefix", bench.DefaultKeyPrefix, "`prefix` of every key written")
	fs.BoolVar(&o.cfg.SkipPreload, "no-preload", false, "do not write the key space before get, txn and mixed")
	fs.Uint64Var(&o.cfg.Seed, "seed", 1, "seed of the random key choices")
	pids := fs.String("pids", "", "comma-separated server `PIDs` whose CPU time per 1000 ops to report (Linux /proc)")
	rssPids := fs.String("rss-pids", "", "comma-separated server `PIDs` whose summed RSS to report at the end")
	scrape := fs.String("scrape", "", "comma-separated metrics `URLs` (http://host:port/metrics) to fetch every --scrape-interval during the run, to measure what scraping costs")
	fs.DurationVar(&o.cfg.ScrapeInterval, "scrape-interval", bench.DefaultScrapeInterval, "time between scrapes of each --scrape URL")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON (durations in ns)")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	cacert := fs.String("cacert", "", "verify the servers' certificates with this CA `file` (TLS)")
	cert := fs.String("cert", "", "client certificate `file` (TLS)")
	key := fs.String("key", "", "client key `file` (TLS)")
	skipVerify := fs.Bool("insecure-skip-tls-verify", false, "accept any server certificate (TLS)")
	user := fs.String("user", "", "etcd user, `name[:password]` (not for connect)")
	password := fs.String("password", "", "password of --user (instead of name:password)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		if *workload != "" {
			return nil, fmt.Errorf("workload given twice: --workload %s and %q", *workload, fs.Arg(0))
		}
		*workload = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return nil, err
		}
		if fs.NArg() > 0 {
			return nil, fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
		}
	}
	if *workload == "" {
		return nil, errors.New("no workload given (run meshkv-bench --help for the list)")
	}
	var err error
	if o.cfg.Workload, err = bench.ParseWorkload(*workload); err != nil {
		return nil, err
	}
	switch *consistency {
	case "l":
	case "s":
		o.cfg.Serializable = true
	default:
		return nil, fmt.Errorf("--consistency %q: want l or s", *consistency)
	}
	if o.cfg.Mix, err = bench.ParseMix(*mix); err != nil {
		return nil, fmt.Errorf("--mix: %w", err)
	}
	if o.cfg.CPUPIDs, err = parsePIDs(*pids); err != nil {
		return nil, fmt.Errorf("--pids: %w", err)
	}
	if o.cfg.RSSPIDs, err = parsePIDs(*rssPids); err != nil {
		return nil, fmt.Errorf("--rss-pids: %w", err)
	}
	o.cfg.ScrapeURLs = splitList(*scrape)
	if o.cfg.ScrapeInterval <= 0 {
		return nil, errors.New("--scrape-interval must be positive")
	}
	o.endpoints = splitList(*endpoints)
	if len(o.endpoints) == 0 {
		return nil, errors.New("--endpoints is empty")
	}
	// Flags give explicit values where the library reads zero as a default.
	for _, f := range []struct {
		name string
		v    int
	}{{"clients", o.cfg.Clients}, {"conns", o.conns}, {"keys", o.cfg.Keys}, {"locks", o.cfg.Locks}, {"watchers", o.cfg.Watchers}} {
		if f.v < 1 {
			return nil, fmt.Errorf("--%s %d: want at least 1", f.name, f.v)
		}
	}
	if o.cfg.Duration <= 0 || o.cfg.OpTimeout <= 0 || o.cfg.LeaseTTL < time.Second {
		return nil, errors.New("--duration and --op-timeout must be positive and --lease-ttl at least 1s")
	}
	if o.cfg.ValueSize < 1 {
		return nil, fmt.Errorf("--value-size %d: want at least 1", o.cfg.ValueSize)
	}
	if !*quiet {
		o.cfg.Progress = stderr
	}
	if err := o.setClient(*cacert, *cert, *key, *skipVerify, *user, *password); err != nil {
		return nil, err
	}
	return o, o.cfg.Validate()
}

// setClient sets the clients' TLS configuration (when a TLS flag is given
// or an endpoint is https:// or unixs://) and user.
func (o *options) setClient(cacert, cert, key string, skipVerify bool, user, password string) error {
	secure := cacert != "" || cert != "" || key != "" || skipVerify
	for _, ep := range o.endpoints {
		if strings.HasPrefix(ep, "https://") || strings.HasPrefix(ep, "unixs://") {
			secure = true
		}
	}
	if secure {
		cfg, err := tlsconfig.Client(tlsconfig.ClientOptions{CAFile: cacert, CertFile: cert, KeyFile: key, InsecureSkipVerify: skipVerify})
		if err != nil {
			return err
		}
		o.client.TLS = cfg
		o.cfg.TLS = cfg
	}
	if user != "" {
		name, pw, ok := strings.Cut(user, ":")
		if ok && password != "" {
			return errors.New("--user name:password and --password given both")
		}
		if !ok {
			pw = password
		}
		o.client.Username, o.client.Password = name, pw
	}
	if o.cfg.Workload == bench.Connect {
		if o.client.Username != "" {
			return errors.New("--user does not apply to the connect workload (it would authenticate on every connection)")
		}
		o.cfg.Endpoints = o.endpoints
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parsePIDs(s string) ([]int, error) {
	var pids []int
	for _, p := range splitList(s) {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a process id", p)
		}
		pids = append(pids, n)
	}
	return pids, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "meshkv-bench: %v\n", err)
		return 2
	}
	clients, err := bench.DialWith(ctx, o.endpoints, o.conns, o.client)
	if err != nil {
		fmt.Fprintf(stderr, "meshkv-bench: %v\n", err)
		return 1
	}
	defer bench.CloseAll(clients)
	res, err := bench.Run(ctx, o.cfg, clients)
	if err != nil {
		fmt.Fprintf(stderr, "meshkv-bench: %v\n", err)
		return 1
	}
	res.Label = strings.Join(o.endpoints, ",")
	if o.json {
		err = res.WriteJSON(stdout)
	} else {
		err = res.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "meshkv-bench: write report: %v\n", err)
		return 1
	}
	return 0
}
