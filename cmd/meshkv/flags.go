package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/meshkv/meshkv"
)

// options are the parsed settings, from flags, the environment or a config
// file.
type options struct {
	cfg       meshkv.Config
	logLevel  slog.Level
	version   bool
	debug     string
	heartbeat uint
	election  uint

	// Raw values that finish() turns into cfg.
	listen, advertise, peers string
	discovery                bool
	passwordFile, level      string
	configFile               string
	logFormat                string
	listenMetrics            string
	grpcGateway              bool
	maxStreams               uint32Value

	// etcd's clustering flags, translated by finish().
	listenPeerURLs, initialCluster, initialClusterToken string

	security *securityFlags // client TLS and auth; see security.go

	fs      *flag.FlagSet
	foreign []*foreignValue
	// warnings are logged once the logger exists (ignored etcd flags,
	// shadowed settings).
	warnings []string
}

// newFlagSet registers every flag on a fresh set.
func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("meshkv", flag.ContinueOnError)
	// Errors are returned and printed once by run; --help prints usage to
	// stdout from run.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&o.listen, "listen-client-urls", "http://127.0.0.1:2379", "comma-separated `URLs` to serve clients on: http://host:port, https://host:port (TLS), unix://path, unixs://path; http and https on one address share its port")
	fs.StringVar(&o.advertise, "advertise-client-urls", "", "comma-separated client `URLs` announced to clients (default: the listen URLs)")
	fs.StringVar(&o.cfg.Name, "name", meshkv.DefaultName, "human-readable `name` of this member")
	fs.IntVar(&o.cfg.MaxRequestBytes, "max-request-bytes", meshkv.DefaultMaxRequestBytes, "maximum client request size in `bytes`")
	fs.IntVar(&o.cfg.MaxTxnOps, "max-txn-ops", meshkv.DefaultMaxTxnOps, "maximum operations per list (compares, success, failure) in a txn")
	fs.Int64Var(&o.cfg.QuotaBytes, "quota-backend-bytes", meshkv.DefaultQuotaBytes, "store size in `bytes` above which writes fail with \"database space exceeded\"")
	fs.UintVar(&o.heartbeat, "heartbeat-interval", uint(meshkv.DefaultTickInterval/time.Millisecond), "raft heartbeat (tick) interval in `ms`")
	fs.UintVar(&o.election, "election-timeout", uint(meshkv.DefaultElectionTimeout/time.Millisecond), "raft election timeout in `ms`")
	fs.Uint64Var(&o.cfg.SnapshotCount, "snapshot-count", meshkv.DefaultSnapshotCount, "applied raft entries between log compactions")
	fs.StringVar(&o.cfg.MeshListen, "mesh-listen", "127.0.0.1:2380", "`HOST:PORT` for the mesh (peer) network; empty: a standalone node without mesh")
	fs.StringVar(&o.peers, "peers", "", "comma-separated mesh `addresses` (HOST:PORT) of peers to connect to")
	fs.BoolVar(&o.discovery, "peer-discovery", true, "also connect to peers learnt from other peers (false: only --peers)")
	fs.StringVar(&o.cfg.ClusterName, "cluster-name", meshkv.DefaultClusterName, "`name` shared by the members of one cluster on the mesh")
	fs.IntVar(&o.cfg.InitialClusterSize, "initial-cluster-size", 1, "nodes of --cluster-name that must meet before they form a cluster; later nodes join it")
	fs.IntVar(&o.cfg.TargetVoters, "target-voters", meshkv.DefaultTargetVoters, "voting members to keep: 1, 3, 5 or 7 (more nodes stay learners)")
	fs.DurationVar(&o.cfg.DeadMemberTimeout, "dead-member-timeout", meshkv.DefaultDeadMember, "how long a member must be unreachable before the leader replaces it")
	fs.StringVar(&o.cfg.AutoCompactionMode, "auto-compaction-mode", "periodic", "`mode` of automatic history compaction: periodic or revision")
	fs.StringVar(&o.cfg.AutoCompactionRetention, "auto-compaction-retention", "0", "history to keep: a duration or hours (periodic), or revisions (revision); 0 disables")
	fs.StringVar(&o.passwordFile, "mesh-password-file", "", "`file` holding the cluster secret: only nodes holding it can link to this one (required when --mesh-listen reaches beyond loopback)")
	fs.BoolVar(&o.cfg.MeshInsecureAllowAnyone, "mesh-insecure-allow-anyone", false, "run without --mesh-password-file although --mesh-listen reaches beyond loopback: ANYONE who reaches the mesh port joins the cluster and can read and change all its data")
	fs.StringVar(&o.cfg.InitialSnapshot, "initial-snapshot", "", "etcd snapshot `file` (etcdctl snapshot save, from meshkv or etcd) to found a new cluster with; only for the node that founds it")
	fs.StringVar(&o.level, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&o.debug, "debug-listen", "", "`HOST:PORT` serving Go's profiler at /debug/pprof/ over plain HTTP (off when empty; keep it on loopback)")
	fs.StringVar(&o.configFile, "config-file", "", "YAML `file` with settings under etcd's key names; flags and environment variables are then ignored, as in etcd")
	fs.StringVar(&o.logFormat, "log-format", "text", "log `format`: text (etcd's console) or json")
	fs.StringVar(&o.cfg.Metrics, "metrics", "basic", "`level` of Prometheus metrics: basic, or extensive (adds gRPC handling-time histograms)")
	fs.StringVar(&o.listenMetrics, "listen-metrics-urls", "", "comma-separated extra `URLs` (http://host:port, or https:// with the client TLS settings) serving only /metrics and the health endpoints")
	fs.BoolVar(&o.cfg.EnablePprof, "enable-pprof", false, "serve Go's profiler at /debug/pprof/ on the client URLs")
	fs.BoolVar(&o.grpcGateway, "enable-grpc-gateway", true, "serve etcd's JSON gateway at /v3/ on the client URLs (always served; false is refused)")
	fs.DurationVar(&o.cfg.GRPCKeepAliveMinTime, "grpc-keepalive-min-time", meshkv.DefaultGRPCKeepAliveMinTime, "shortest `interval` at which a client may ping the server; 0: gRPC's default of 5 minutes")
	fs.DurationVar(&o.cfg.GRPCKeepAliveInterval, "grpc-keepalive-interval", meshkv.DefaultGRPCKeepAliveInterval, "`interval` at which the server pings idle client connections (0: gRPC's default)")
	fs.DurationVar(&o.cfg.GRPCKeepAliveTimeout, "grpc-keepalive-timeout", meshkv.DefaultGRPCKeepAliveTimeout, "how long the server waits for a ping's answer before closing the connection (0: gRPC's default)")
	o.maxStreams = uint32Value{p: &o.cfg.MaxConcurrentStreams}
	fs.Var(&o.maxStreams, "max-concurrent-streams", "most concurrent streams (calls) one client connection may open (default 4294967295: unlimited)")
	fs.DurationVar(&o.cfg.WatchProgressNotifyInterval, "watch-progress-notify-interval", meshkv.DefaultWatchProgressNotifyInterval, "`interval` of progress notifications to watchers that ask for them")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")

	// etcd's clustering flags, for etcd command lines.
	fs.StringVar(&o.listenPeerURLs, "listen-peer-urls", "", "etcd's peer `URLs`: the first one's host:port is used as --mesh-listen")
	fs.StringVar(&o.initialCluster, "initial-cluster", "", "etcd's `name=peerURL,...`: the other members' addresses become --peers and their count --initial-cluster-size")
	fs.StringVar(&o.initialClusterToken, "initial-cluster-token", "", "etcd's cluster `token`: used as --cluster-name unless that is set")
	o.security = addSecurityFlags(fs)
	o.foreign = registerForeign(fs)
	o.fs = fs
	return fs
}

// usage prints the help text: meshkv's own flags, then a pointer to the
// etcd flags that are accepted but ignored or refused.
func usage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprint(out, "Usage: meshkv [flags]\n\n"+
		"Runs a meshkv member serving etcd's v3 gRPC API (use etcdctl or any etcd client).\n"+
		"With no flags: a single in-memory node on http://127.0.0.1:2379.\n\n"+
		"Every flag can also be set in the environment as MESHKV_<FLAG> (upper case, '-' as '_'),\n"+
		"and flags shared with etcd also as ETCD_<FLAG>; the command line wins.\n\nFlags:\n")
	var foreign []string
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := f.Value.(*foreignValue); ok {
			foreign = append(foreign, "--"+f.Name)
			return
		}
		name, use := flag.UnquoteUsage(f)
		fmt.Fprintf(out, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(out, " %s", name)
		}
		fmt.Fprintf(out, "\n    \t%s", strings.ReplaceAll(use, "\n", "\n    \t"))
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(out, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(out)
	})
	fmt.Fprintf(out, "\netcd flags that meshkv accepts but ignores, or refuses with a reason "+
		"(see the README's table \"Coming from etcd\"):\n  %s\n", strings.Join(foreign, " "))
}

// parseFlags reads the command line, then the environment (env looks a
// variable up) or, with --config-file, the file instead of both, and turns
// the result into a meshkv.Config.
func parseFlags(args []string, environ []string) (*options, error) {
	env := envMap(environ)
	o := &options{}
	fs := newFlagSet(o)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	setOnLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { setOnLine[f.Name] = true })
	file := o.configFile
	if file == "" {
		file, _ = lookupEnv(env, "config-file")
	}
	if file != "" {
		// As etcd: a config file replaces the command line and the
		// environment. Start again from the defaults.
		fresh := &options{}
		newFlagSet(fresh)
		if err := applyConfigFile(fresh.fs, file); err != nil {
			return nil, err
		}
		fresh.configFile = file
		for name := range setOnLine {
			if name != "config-file" {
				fresh.warnings = append(fresh.warnings, fmt.Sprintf("--%s on the command line is ignored: --config-file is given (as in etcd)", name))
			}
		}
		o = fresh
	} else {
		warnings, err := applyEnv(o.fs, env, setOnLine)
		if err != nil {
			return nil, err
		}
		o.warnings = append(o.warnings, warnings...)
	}
	if err := o.finish(); err != nil {
		return nil, err
	}
	return o, nil
}

// finish turns the raw settings into o.cfg.
func (o *options) finish() error {
	if err := o.logLevel.UnmarshalText([]byte(o.level)); err != nil {
		return fmt.Errorf("--log-level: %v", err)
	}
	switch o.logFormat {
	case "text", "console":
		o.logFormat = "text"
	case "json":
	default:
		return fmt.Errorf("--log-format %q: want text (or etcd's console) or json", o.logFormat)
	}
	if !o.grpcGateway {
		return errors.New("--enable-grpc-gateway=false: meshkv always serves the JSON gateway on its client URLs")
	}
	o.cfg.ListenMetricsURLs = splitList(o.listenMetrics)
	// etcd passes 0 as "do not set": gRPC's defaults apply.
	for _, d := range []*time.Duration{&o.cfg.GRPCKeepAliveMinTime, &o.cfg.GRPCKeepAliveInterval, &o.cfg.GRPCKeepAliveTimeout} {
		switch {
		case *d < 0:
			return errors.New("--grpc-keepalive-*: negative duration")
		case *d == 0:
			*d = -1
		}
	}
	for _, v := range o.foreign {
		if v.isSet {
			o.warnings = append(o.warnings, fmt.Sprintf("etcd's --%s is ignored: %s", v.f.name, v.f.why))
		}
	}
	o.cfg.Peers = splitList(o.peers)
	o.cfg.DisablePeerDiscovery = !o.discovery
	if o.passwordFile != "" {
		pw, err := os.ReadFile(o.passwordFile)
		if err != nil {
			return fmt.Errorf("--mesh-password-file: %v", err)
		}
		o.cfg.MeshPassword = bytes.TrimRight(pw, "\r\n")
		if len(o.cfg.MeshPassword) == 0 {
			return fmt.Errorf("--mesh-password-file %s is empty", o.passwordFile)
		}
	}
	o.cfg.ListenClientURLs = splitList(o.listen)
	o.cfg.AdvertiseClientURLs = splitList(o.advertise)
	if o.heartbeat == 0 || o.election == 0 {
		return errors.New("--heartbeat-interval and --election-timeout must be positive")
	}
	o.cfg.TickInterval = time.Duration(o.heartbeat) * time.Millisecond
	o.cfg.ElectionTimeout = time.Duration(o.election) * time.Millisecond
	return o.translateEtcdClustering()
}

// isSet reports whether a flag was set (on the command line, in the
// environment or in the config file).
func (o *options) isSet(name string) bool {
	set := false
	o.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// translateEtcdClustering maps etcd's --listen-peer-urls, --initial-cluster
// and --initial-cluster-token onto meshkv's mesh settings. meshkv's own flags
// win when both are given.
func (o *options) translateEtcdClustering() error {
	if o.listenPeerURLs != "" && !o.isSet("mesh-listen") {
		first := splitList(o.listenPeerURLs)[0]
		hostport, err := peerURLHostPort(first)
		if err != nil {
			return fmt.Errorf("--listen-peer-urls: %v", err)
		}
		o.cfg.MeshListen = hostport
	}
	if o.initialClusterToken != "" && !o.isSet("cluster-name") {
		o.cfg.ClusterName = o.initialClusterToken
	}
	if o.initialCluster == "" {
		return nil
	}
	var others []string
	members := 0
	for _, entry := range splitList(o.initialCluster) {
		name, u, ok := strings.Cut(entry, "=")
		if !ok || name == "" {
			return fmt.Errorf("--initial-cluster: %q is not name=URL", entry)
		}
		hostport, err := peerURLHostPort(u)
		if err != nil {
			return fmt.Errorf("--initial-cluster: member %s: %v", name, err)
		}
		members++
		if name != o.cfg.Name {
			others = append(others, hostport)
		}
	}
	if !o.isSet("peers") {
		o.cfg.Peers = others
	}
	if !o.isSet("initial-cluster-size") {
		o.cfg.InitialClusterSize = members
	}
	return nil
}

// peerURLHostPort returns the host:port of an etcd peer URL.
func peerURLHostPort(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("%q is not a URL with a host", s)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return "", fmt.Errorf("%q has no port", s)
	}
	return u.Host, nil
}

// uint32Value is a flag.Value for etcd's uint32 flags. The largest value
// (etcd's default) means no limit and is kept as 0.
type uint32Value struct{ p *uint32 }

func (v *uint32Value) String() string {
	if v.p == nil || *v.p == 0 {
		return strconv.FormatUint(math.MaxUint32, 10)
	}
	return strconv.FormatUint(uint64(*v.p), 10)
}

func (v *uint32Value) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return fmt.Errorf("want a number from 0 to %d", uint64(math.MaxUint32))
	}
	if n == math.MaxUint32 {
		n = 0
	}
	*v.p = uint32(n)
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
