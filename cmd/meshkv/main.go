// Command meshkv runs a meshkv member: an in-memory, strongly consistent
// key-value and lock store that serves etcd's v3 API, so stock etcdctl and etcd
// clients work against it.
//
// With no flags it serves a single node on http://127.0.0.1:2379, etcd's default
// client URL. Flags follow etcd's names; run meshkv --help for the list.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/gctune"
	"github.com/meshkv/meshkv/kvapi"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the parsed command line.
type options struct {
	cfg       meshkv.Config
	logLevel  slog.Level
	version   bool
	debug     string
	heartbeat uint
	election  uint
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("meshkv", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: meshkv [flags]\n\n"+
			"Runs a meshkv member serving etcd's v3 gRPC API (use etcdctl or any etcd client).\n"+
			"With no flags: a single in-memory node on http://127.0.0.1:2379.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	listen := fs.String("listen-client-urls", "http://127.0.0.1:2379", "comma-separated `URLs` to serve clients on (http://host:port)")
	advertise := fs.String("advertise-client-urls", "", "comma-separated client `URLs` announced to clients (default: the listen URLs)")
	fs.StringVar(&o.cfg.Name, "name", meshkv.DefaultName, "human-readable `name` of this member")
	fs.IntVar(&o.cfg.MaxRequestBytes, "max-request-bytes", kvapi.DefaultMaxRequestBytes, "maximum client request size in `bytes`")
	fs.IntVar(&o.cfg.MaxTxnOps, "max-txn-ops", kvapi.DefaultMaxTxnOps, "maximum operations per list (compares, success, failure) in a txn")
	fs.Int64Var(&o.cfg.QuotaBytes, "quota-backend-bytes", kvapi.DefaultQuotaBytes, "store size in `bytes` above which writes fail with \"database space exceeded\"")
	fs.UintVar(&o.heartbeat, "heartbeat-interval", uint(meshkv.DefaultTickInterval/time.Millisecond), "raft heartbeat (tick) interval in `ms`")
	fs.UintVar(&o.election, "election-timeout", uint(meshkv.DefaultElectionTimeout/time.Millisecond), "raft election timeout in `ms`")
	fs.Uint64Var(&o.cfg.SnapshotCount, "snapshot-count", meshkv.DefaultSnapshotCount, "applied raft entries between log compactions")
	fs.StringVar(&o.cfg.MeshListen, "mesh-listen", "127.0.0.1:2380", "`HOST:PORT` for the mesh (peer) network; empty: a standalone node without mesh")
	peers := fs.String("peers", "", "comma-separated mesh `addresses` (HOST:PORT) of peers to connect to")
	discovery := fs.Bool("peer-discovery", true, "also connect to peers learnt from other peers (false: only --peers)")
	fs.StringVar(&o.cfg.ClusterName, "cluster-name", meshkv.DefaultClusterName, "`name` shared by the members of one cluster on the mesh")
	fs.IntVar(&o.cfg.InitialClusterSize, "initial-cluster-size", 1, "nodes of --cluster-name that must meet before they form a cluster; later nodes join it")
	fs.IntVar(&o.cfg.TargetVoters, "target-voters", meshkv.DefaultTargetVoters, "voting members to keep: 1, 3, 5 or 7 (more nodes stay learners)")
	fs.DurationVar(&o.cfg.DeadMemberTimeout, "dead-member-timeout", meshkv.DefaultDeadMember, "how long a member must be unreachable before the leader replaces it")
	fs.StringVar(&o.cfg.AutoCompactionMode, "auto-compaction-mode", "periodic", "`mode` of automatic history compaction: periodic or revision")
	fs.StringVar(&o.cfg.AutoCompactionRetention, "auto-compaction-retention", "0", "history to keep: a duration or hours (periodic), or revisions (revision); 0 disables")
	passwordFile := fs.String("mesh-password-file", "", "`file` holding the shared mesh password (encrypts and authenticates peers); unset: no encryption")
	level := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&o.debug, "debug-listen", "", "`HOST:PORT` serving Go's profiler at /debug/pprof/ over plain HTTP (off when empty; keep it on loopback)")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return nil, fmt.Errorf("--log-level: %v", err)
	}
	o.cfg.Peers = splitList(*peers)
	o.cfg.DisablePeerDiscovery = !*discovery
	if *passwordFile != "" {
		pw, err := os.ReadFile(*passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--mesh-password-file: %v", err)
		}
		o.cfg.MeshPassword = bytes.TrimRight(pw, "\r\n")
		if len(o.cfg.MeshPassword) == 0 {
			return nil, fmt.Errorf("--mesh-password-file %s is empty", *passwordFile)
		}
	}
	o.cfg.ListenClientURLs = splitList(*listen)
	o.cfg.AdvertiseClientURLs = splitList(*advertise)
	o.cfg.TickInterval = time.Duration(o.heartbeat) * time.Millisecond
	o.cfg.ElectionTimeout = time.Duration(o.election) * time.Millisecond
	if o.heartbeat == 0 || o.election == 0 {
		return nil, errors.New("--heartbeat-interval and --election-timeout must be positive")
	}
	return o, nil
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

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "meshkv: %v\n", err)
		return 2
	}
	if o.version {
		fmt.Fprintf(stdout, "meshkv Version: %s\netcd API Version: %s\n", meshkv.Version, kvapi.ServerVersion)
		return 0
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	o.cfg.Logger = log
	if err := o.cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "meshkv: %v\n", err)
		return 2
	}

	if o.debug != "" {
		srv, addr, err := serveDebug(o.debug, log)
		if err != nil {
			fmt.Fprintf(stderr, "meshkv: --debug-listen: %v\n", err)
			return 1
		}
		defer srv.Close()
		log.Info("serving the profiler", "url", "http://"+addr+"/debug/pprof/")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The store lives in the heap: keep Go's GC headroom bounded for large
	// stores (unless GOGC is set).
	go gctune.Run(ctx, gctune.Config{})
	node, err := meshkv.Start(ctx, o.cfg)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	log.Info("serving etcd v3 API", "version", meshkv.Version, "client-addrs", node.ClientAddrs(), "mesh-addr", node.MeshAddr())
	code := 0
	select {
	case <-ctx.Done():
		log.Info("shutting down", "signal", context.Cause(ctx))
	case <-node.Done():
		// Removed from the cluster: exit so a supervisor can start a new
		// member in its place.
		log.Error("stopping", "err", node.Err())
		code = 1
	}
	if err := node.Close(); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return code
}

// serveDebug serves net/http/pprof on addr until the returned server is
// closed, and returns the address it listens on.
func serveDebug(addr string, log *slog.Logger) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("profiler stopped", "err", err)
		}
	}()
	return srv, ln.Addr().String(), nil
}
