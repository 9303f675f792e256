package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEnvironment(t *testing.T) {
	o, err := parseFlags([]string{"--name", "cli"}, []string{
		"MESHKV_NAME=env",             // shadowed by the command line
		"ETCD_MAX_TXN_OPS=64",         // etcd's name for a shared flag
		"MESHKV_TARGET_VOTERS=5",      // meshkv-only flag
		"ETCD_TARGET_VOTERS=7",        // not an etcd flag: names nothing
		"MESHKV_SNAPSHOT_COUNT=42",    // MESHKV_ wins over ETCD_
		"ETCD_SNAPSHOT_COUNT=43",      //
		"ETCD_DATA_DIR=/var/lib/etcd", // ignored etcd flag
		"PATH=/bin",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Name != "cli" || c.MaxTxnOps != 64 || c.TargetVoters != 5 || c.SnapshotCount != 42 {
		t.Fatalf("config = name %q txn ops %d voters %d snapshot count %d; want cli 64 5 42", c.Name, c.MaxTxnOps, c.TargetVoters, c.SnapshotCount)
	}
	for _, want := range []string{"MESHKV_NAME is shadowed by --name", "ETCD_TARGET_VOTERS names no flag", "--data-dir is ignored"} {
		if !slices.ContainsFunc(o.warnings, func(w string) bool { return strings.Contains(w, want) }) {
			t.Errorf("warnings %q lack %q", o.warnings, want)
		}
	}
	if _, err := parseFlags(nil, []string{"ETCD_MAX_TXN_OPS=many"}); err == nil || !strings.Contains(err.Error(), "ETCD_MAX_TXN_OPS") {
		t.Errorf("bad environment value: err %v, want one naming the variable", err)
	}
	if _, err := parseFlags(nil, []string{"ETCD_PEER_CERT_FILE=/x.pem"}); err == nil {
		t.Error("a refused etcd flag from the environment was accepted")
	}
}

func TestConfigFile(t *testing.T) {
	pw := writeFile(t, "pw", "secret\n")
	file := writeFile(t, "meshkv.yaml", `
# etcd's keys
name: infra1
data-dir: /var/lib/etcd
listen-client-urls: http://127.0.0.1:12379,http://127.0.0.1:22379
advertise-client-urls: [http://10.0.0.1:2379]
heartbeat-interval: 50
election-timeout: 500
max-txn-ops: 256
auto-compaction-mode: revision
auto-compaction-retention: "1000"
initial-cluster: infra1=http://10.0.0.1:2380,infra2=http://10.0.0.2:2380,infra3=http://10.0.0.3:2380
initial-cluster-token: tok
listen-peer-urls: http://10.0.0.1:2380
initial-cluster-state: new
cert-file: ""
discovery-srv:
client-transport-security:
  cert-file:
  client-cert-auth: false
peer-transport-security:
  auto-tls: false
metrics: extensive
listen-metrics-urls: http://127.0.0.1:2381
enable-grpc-gateway: true
log-format: json
grpc-keepalive-min-time: 10000000000
watch-progress-notify-interval: 5s
max-concurrent-streams: 4294967295
# meshkv's own keys
mesh-password-file: `+pw+`
target-voters: 5
`)
	o, err := parseFlags([]string{"--config-file", file, "--name", "ignored"}, []string{"ETCD_NAME=ignored-too"})
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Name != "infra1" || c.TickInterval != 50*time.Millisecond || c.ElectionTimeout != 500*time.Millisecond ||
		c.MaxTxnOps != 256 || c.AutoCompactionRetention != "1000" || c.TargetVoters != 5 || string(c.MeshPassword) != "secret" {
		t.Fatalf("config from file = %+v", c)
	}
	if !slices.Equal(c.ListenClientURLs, []string{"http://127.0.0.1:12379", "http://127.0.0.1:22379"}) ||
		!slices.Equal(c.AdvertiseClientURLs, []string{"http://10.0.0.1:2379"}) {
		t.Fatalf("urls = %v / %v", c.ListenClientURLs, c.AdvertiseClientURLs)
	}
	if c.MeshListen != "10.0.0.1:2380" || !slices.Equal(c.Peers, []string{"10.0.0.2:2380", "10.0.0.3:2380"}) ||
		c.InitialClusterSize != 3 || c.ClusterName != "tok" {
		t.Fatalf("etcd clustering: mesh %q peers %v size %d name %q", c.MeshListen, c.Peers, c.InitialClusterSize, c.ClusterName)
	}
	if c.Metrics != "extensive" || !slices.Equal(c.ListenMetricsURLs, []string{"http://127.0.0.1:2381"}) || o.logFormat != "json" ||
		c.GRPCKeepAliveMinTime != 10*time.Second || c.WatchProgressNotifyInterval != 5*time.Second || c.MaxConcurrentStreams != 0 {
		t.Fatalf("observability settings from file: %+v, log format %q (a bare number is nanoseconds, as etcd's JSON durations)", c, o.logFormat)
	}
	if !slices.ContainsFunc(o.warnings, func(w string) bool { return strings.Contains(w, "--name on the command line is ignored") }) {
		t.Errorf("warnings %q: want one for the shadowed --name", o.warnings)
	}

	for name, content := range map[string]string{
		"unknown key":   "nmae: x\n",
		"refused":       "discovery-srv: example.com\n",
		"peer tls":      "peer-transport-security:\n  cert-file: /x.pem\n",
		"unknown tls":   "client-transport-security:\n  cert: /x.pem\n",
		"bad value":     "max-txn-ops: lots\n",
		"not yaml":      "name: [unclosed\n",
		"nested config": "config-file: other.yaml\n",
	} {
		if _, err := parseFlags([]string{"--config-file", writeFile(t, "bad.yaml", content)}, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := parseFlags(nil, []string{"ETCD_CONFIG_FILE=" + filepath.Join(t.TempDir(), "absent.yaml")}); err == nil {
		t.Error("a missing config file named by ETCD_CONFIG_FILE was accepted")
	}
}

func TestEtcdClusteringFlags(t *testing.T) {
	o, err := parseFlags([]string{"--name", "b", "--initial-cluster", "a=http://h1:2380,b=http://h2:2380,c=https://h3:2380",
		"--listen-peer-urls", "http://0.0.0.0:2380,http://h2:2381", "--cluster-name", "mine", "--initial-cluster-token", "tok"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if !slices.Equal(c.Peers, []string{"h1:2380", "h3:2380"}) || c.InitialClusterSize != 3 || c.MeshListen != "0.0.0.0:2380" || c.ClusterName != "mine" {
		t.Fatalf("peers %v size %d mesh %q cluster %q", c.Peers, c.InitialClusterSize, c.MeshListen, c.ClusterName)
	}
	// meshkv's own flags win.
	o, err = parseFlags([]string{"--initial-cluster", "a=http://h1:2380,b=http://h2:2380", "--peers", "x:1", "--initial-cluster-size", "1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.cfg.Peers, []string{"x:1"}) || o.cfg.InitialClusterSize != 1 {
		t.Fatalf("own flags lost: peers %v size %d", o.cfg.Peers, o.cfg.InitialClusterSize)
	}
	for _, bad := range []string{"a", "a=", "a=http://h1", "=http://h:1"} {
		if _, err := parseFlags([]string{"--initial-cluster", bad}, nil); err == nil {
			t.Errorf("--initial-cluster %q accepted", bad)
		}
	}
}

// TestEtcdFlagTable keeps the table of etcd's flags in step with the flags
// meshkv registers.
func TestEtcdFlagTable(t *testing.T) {
	fs := newFlagSet(&options{})
	seen := map[string]bool{}
	for _, f := range etcdFlags {
		if seen[f.name] {
			t.Errorf("--%s listed twice", f.name)
		}
		seen[f.name] = true
		fl := fs.Lookup(f.name)
		if fl == nil {
			t.Errorf("etcd's --%s is not registered", f.name)
			continue
		}
		_, foreign := fl.Value.(*foreignValue)
		if (f.treat == same || f.treat == mapped) == foreign {
			t.Errorf("--%s is %s but registered as foreign=%v", f.name, f.treat, foreign)
		}
		if f.treat != same && f.why == "" {
			t.Errorf("--%s is %s without a reason", f.name, f.treat)
		}
	}
}

func TestIgnoredBoolFlagsTakeNoValue(t *testing.T) {
	o, err := parseFlags([]string{"--unsafe-no-fsync", "--pre-vote", "--data-dir", "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.warnings) != 3 {
		t.Fatalf("warnings = %q, want one per ignored flag", o.warnings)
	}
}

func TestVersionFromBuildInfo(t *testing.T) {
	var out bytes.Buffer
	printVersion(&out)
	for _, want := range []string{"meshkv Version:", "Git SHA:", "Go Version: go1.", "Go OS/Arch: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("version output %q lacks %q", out.String(), want)
		}
	}
}

func TestNotifySystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Skipf("unixgram sockets: %v", err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	if err := notifySystemd("READY=1"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = l.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := l.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := notifySystemd("READY=1"); err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}
}

// TestDeployConfigParses keeps deploy/meshkv.yaml, the systemd unit's
// example, loadable.
func TestDeployConfigParses(t *testing.T) {
	o := &options{}
	fs := newFlagSet(o)
	if err := applyConfigFile(fs, "../../deploy/meshkv.yaml"); err != nil {
		t.Fatal(err)
	}
	o.passwordFile = "" // installed by systemd, not here
	if err := o.finish(); err != nil {
		t.Fatal(err)
	}
	if o.cfg.Name != "m1" || len(o.cfg.Peers) != 2 || o.cfg.InitialClusterSize != 3 || o.cfg.ClusterName != "prod-locks" {
		t.Fatalf("deploy config = %+v", o.cfg)
	}
}
