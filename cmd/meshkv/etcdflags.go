package main

import (
	"flag"
	"fmt"
	"slices"
)

// treatment is what meshkv does with one of etcd's server flags.
type treatment int

const (
	// same: meshkv has the flag, with etcd's meaning.
	same treatment = iota
	// mapped: meshkv accepts etcd's flag and translates it into its own
	// settings (see etcdcompat.go).
	mapped
	// ignored: accepted so that etcd command lines and config files run
	// unchanged; the setting has no meaning for an in-memory store on a mesh.
	// A warning is logged when it is set.
	ignored
	// refused: setting it is an error, because ignoring it would silently
	// give the operator something other than what was asked for (usually
	// security or cluster identity).
	refused
)

func (t treatment) String() string {
	switch t {
	case same:
		return "same"
	case mapped:
		return "mapped"
	case ignored:
		return "ignored"
	}
	return "refused"
}

// etcdFlag is one flag of etcd 3.7's server and what meshkv does with it.
type etcdFlag struct {
	name  string
	treat treatment
	why   string // for mapped, ignored and refused: what happens instead, and why
}

// Reasons shared by several flags.
const (
	whyInMemory   = "meshkv keeps its data in memory: there is no data directory, WAL or backend database"
	whyPeerTLS    = "peer traffic is authenticated and encrypted by meshkv's own peer links (--mesh-password-file and per-member keys), not by etcd's peer certificates"
	whyDiscovery  = "members find each other over the mesh (--peers, --peer-discovery); etcd's discovery service is not used"
	whyTracing    = "meshkv does not export traces"
	whyCorruption = "every member applies the same log to an in-memory store; use etcdctl endpoint hashkv to compare members"
)

// etcdFlags lists every flag of etcd 3.7.3's server (etcd --help) in its
// order. A test keeps it in step with the flags meshkv registers, and the
// README's "coming from etcd" table is made from it.
var etcdFlags = []etcdFlag{
	// Member.
	{"name", same, ""},
	{"data-dir", ignored, whyInMemory},
	{"wal-dir", ignored, whyInMemory},
	{"snapshot-count", same, "applied entries between raft log compactions (meshkv's default is 10000: its snapshots are in memory)"},
	{"heartbeat-interval", same, ""},
	{"election-timeout", same, ""},
	{"initial-election-tick-advance", ignored, "a new member waits for the cluster's leader through the mesh instead"},
	{"listen-peer-urls", mapped, "the first URL's host:port becomes --mesh-listen"},
	{"listen-client-urls", same, ""},
	{"listen-client-http-urls", refused, "not supported yet"},
	{"max-snapshots", ignored, whyInMemory},
	{"max-wals", ignored, whyInMemory},
	{"quota-backend-bytes", same, "bounds the in-memory store's size"},
	{"backend-bbolt-freelist-type", ignored, whyInMemory},
	{"backend-batch-interval", ignored, whyInMemory},
	{"backend-batch-limit", ignored, whyInMemory},
	{"max-txn-ops", same, ""},
	{"max-request-bytes", same, ""},
	{"max-concurrent-streams", same, ""},
	{"enable-grpc-gateway", same, "the gateway is always on: false is refused"},
	{"grpc-keepalive-min-time", same, ""},
	{"grpc-keepalive-interval", same, ""},
	{"grpc-keepalive-timeout", same, ""},
	{"socket-reuse-port", ignored, "meshkv does not set SO_REUSEPORT on its listeners"},
	{"socket-reuse-address", ignored, "meshkv does not set SO_REUSEADDR on its listeners"},
	{"raft-read-timeout", ignored, "peer links detect silent failures with their own probes within about half a second"},
	{"raft-write-timeout", ignored, "peer links detect silent failures with their own probes within about half a second"},
	// Clustering.
	{"initial-advertise-peer-urls", ignored, "a member announces the address of --mesh-listen (or --listen-peer-urls) to its peers"},
	{"initial-cluster", mapped, "the other members' peer URLs become --peers and their count --initial-cluster-size"},
	{"initial-cluster-state", ignored, "a node forms a cluster or joins the existing one on its own"},
	{"initial-cluster-token", mapped, "becomes --cluster-name unless that is set"},
	{"advertise-client-urls", same, ""},
	{"discovery-endpoints", refused, whyDiscovery},
	{"discovery-token", refused, whyDiscovery},
	{"discovery-dial-timeout", refused, whyDiscovery},
	{"discovery-request-timeout", refused, whyDiscovery},
	{"discovery-keepalive-time", refused, whyDiscovery},
	{"discovery-keepalive-timeout", refused, whyDiscovery},
	{"discovery-insecure-transport", refused, whyDiscovery},
	{"discovery-insecure-skip-tls-verify", refused, whyDiscovery},
	{"discovery-cert", refused, whyDiscovery},
	{"discovery-key", refused, whyDiscovery},
	{"discovery-cacert", refused, whyDiscovery},
	{"discovery-user", refused, whyDiscovery},
	{"discovery-password", refused, whyDiscovery},
	{"discovery-fallback", refused, whyDiscovery},
	{"discovery-srv", refused, whyDiscovery},
	{"discovery-srv-name", refused, whyDiscovery},
	{"strict-reconfig-check", ignored, "always on: membership changes never remove a quorum"},
	{"pre-vote", ignored, "always on: raft runs with PreVote and CheckQuorum"},
	{"auto-compaction-retention", same, ""},
	{"auto-compaction-mode", same, ""},
	{"v2-deprecation", ignored, "meshkv serves only the v3 API"},
	{"max-learners", ignored, "learners are added as nodes join and promoted up to --target-voters"},
	// Security.
	{"cert-file", same, "reloaded when the file changes, checked at each handshake"},
	{"key-file", same, "reloaded when the file changes, checked at each handshake"},
	{"client-cert-auth", same, "needs --trusted-ca-file (without it any public CA's certificates would name users)"},
	{"client-cert-file", ignored, "meshkv makes no TLS client connections to itself (no gRPC gateway)"},
	{"client-key-file", ignored, "meshkv makes no TLS client connections to itself (no gRPC gateway)"},
	{"client-crl-file", same, "PEM or DER; reloaded when the file changes"},
	{"client-cert-allowed-hostname", same, "a comma-separated list, as in etcd 3.6 and later; needs --trusted-ca-file"},
	{"trusted-ca-file", same, "reloaded when the file changes; as in etcd, it alone makes client certificates required"},
	{"auto-tls", same, "the certificate is made in memory at start, for the hosts of --listen-client-urls"},
	{"peer-cert-file", refused, whyPeerTLS},
	{"peer-key-file", refused, whyPeerTLS},
	{"peer-client-cert-auth", refused, whyPeerTLS},
	{"peer-trusted-ca-file", refused, whyPeerTLS},
	{"peer-cert-allowed-cn", refused, whyPeerTLS},
	{"peer-cert-allowed-hostname", refused, whyPeerTLS},
	{"peer-auto-tls", refused, whyPeerTLS},
	{"peer-client-cert-file", refused, whyPeerTLS},
	{"peer-client-key-file", refused, whyPeerTLS},
	{"peer-crl-file", refused, whyPeerTLS},
	{"peer-skip-client-san-verification", refused, whyPeerTLS},
	{"self-signed-cert-validity", same, "in years, for --auto-tls"},
	{"cipher-suites", same, ""},
	{"cors", refused, "not supported yet"},
	{"host-whitelist", refused, "not supported yet"},
	{"tls-min-version", same, ""},
	{"tls-max-version", same, ""},
	// Auth.
	{"auth-token", same, "simple, jwt,... or empty (none: users known by certificate only)"},
	{"bcrypt-cost", same, ""},
	{"auth-token-ttl", same, ""},
	// Profiling and monitoring.
	{"enable-pprof", same, "serves /debug/pprof/ on the client URLs; --debug-listen serves it on an address of its own"},
	{"metrics", same, "basic or extensive, as etcd"},
	{"listen-metrics-urls", same, "http, or https with the client TLS configuration, as etcd"},
	// Logging.
	{"logger", ignored, "meshkv logs through Go's log/slog"},
	{"log-outputs", ignored, "meshkv logs to standard error"},
	{"log-level", same, ""},
	{"log-format", same, "text (the default; etcd's console) or json"},
	{"enable-log-rotation", ignored, "meshkv logs to standard error; rotate with the supervisor (journald, docker)"},
	{"log-rotation-config-json", ignored, "meshkv logs to standard error; rotate with the supervisor (journald, docker)"},
	// Tracing.
	{"enable-distributed-tracing", ignored, whyTracing},
	{"distributed-tracing-address", ignored, whyTracing},
	{"distributed-tracing-service-name", ignored, whyTracing},
	{"distributed-tracing-instance-id", ignored, whyTracing},
	{"distributed-tracing-sampling-rate", ignored, whyTracing},
	// Features and checks.
	{"feature-gates", ignored, "meshkv's features are always on"},
	{"corrupt-check-time", ignored, whyCorruption},
	{"compact-hash-check-time", ignored, whyCorruption},
	{"downgrade-check-time", ignored, "meshkv members are replaced, not downgraded in place"},
	{"watch-progress-notify-interval", same, ""},
	{"warning-apply-duration", ignored, "meshkv does not log slow applies"},
	{"warning-unary-request-duration", ignored, "meshkv does not log slow requests"},
	{"memory-mlock", ignored, whyInMemory},
	{"bootstrap-defrag-threshold-megabytes", ignored, whyInMemory},
	{"compaction-batch-limit", ignored, "compaction of the in-memory store is not batched"},
	{"compaction-sleep-interval", ignored, "compaction of the in-memory store is not batched"},
	// Unsafe.
	{"force-new-cluster", refused, "the data lives in a running process: send it SIGUSR2 instead (see Losing quorum)"},
	{"unsafe-no-fsync", ignored, whyInMemory},
	// Command.
	{"config-file", same, "YAML with etcd's keys; as in etcd, flags and environment variables are then ignored"},
	{"version", same, "also prints the VCS revision, Go version and platform"},
}

// etcdFlagByName returns the entry for an etcd flag name.
func etcdFlagByName(name string) (etcdFlag, bool) {
	i := slices.IndexFunc(etcdFlags, func(f etcdFlag) bool { return f.name == name })
	if i < 0 {
		return etcdFlag{}, false
	}
	return etcdFlags[i], true
}

// isEtcdFlag reports whether name is one of etcd's server flags (it is then
// also read from ETCD_<NAME>).
func isEtcdFlag(name string) bool {
	_, ok := etcdFlagByName(name)
	return ok
}

// foreignValue is the flag.Value of an etcd flag that meshkv ignores or
// refuses. It accepts any value and remembers it.
type foreignValue struct {
	f     etcdFlag
	isSet bool
	value string
}

func (v *foreignValue) String() string { return v.value }

func (v *foreignValue) Set(s string) error {
	if v.f.treat == refused {
		return fmt.Errorf("etcd's --%s is not supported by meshkv: %s", v.f.name, v.f.why)
	}
	v.isSet, v.value = true, s
	return nil
}

// IsBoolFlag lets etcd's boolean flags be given without a value.
func (v *foreignValue) IsBoolFlag() bool { return boolEtcdFlags[v.f.name] }

// boolEtcdFlags are the ignored or refused etcd flags that take no value.
var boolEtcdFlags = map[string]bool{
	"initial-election-tick-advance": true, "socket-reuse-port": true,
	"socket-reuse-address": true, "strict-reconfig-check": true, "pre-vote": true,
	"client-cert-auth": true, "auto-tls": true, "peer-client-cert-auth": true, "peer-auto-tls": true,
	"peer-skip-client-san-verification": true, "enable-log-rotation": true,
	"enable-distributed-tracing": true, "memory-mlock": true, "force-new-cluster": true,
	"unsafe-no-fsync": true,
}

// registerForeign adds every ignored or refused etcd flag that meshkv has
// not registered itself, and returns their values so that set ones can be
// reported.
func registerForeign(fs *flag.FlagSet) []*foreignValue {
	var out []*foreignValue
	for _, f := range etcdFlags {
		if f.treat == same || f.treat == mapped || fs.Lookup(f.name) != nil {
			continue
		}
		v := &foreignValue{f: f}
		fs.Var(v, f.name, fmt.Sprintf("etcd flag, %s by meshkv: %s", f.treat, f.why))
		out = append(out, v)
	}
	return out
}
