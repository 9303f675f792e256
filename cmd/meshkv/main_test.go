package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, nil, &out, &errb); code != 0 {
		t.Fatalf("--version exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "meshkv Version:") || !strings.Contains(out.String(), "etcd API Version: 3.7") {
		t.Fatalf("--version printed %q", out.String())
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, nil, &out, &errb); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	if errb.Len() != 0 {
		t.Errorf("--help wrote to stderr: %q", errb.String())
	}
	for _, f := range []string{"name", "listen-client-urls", "advertise-client-urls", "mesh-listen", "peers",
		"peer-discovery", "cluster-name", "initial-cluster-size", "target-voters", "mesh-password-file", "initial-snapshot",
		"dead-member-timeout", "auto-compaction-mode", "auto-compaction-retention", "quota-backend-bytes",
		"max-request-bytes", "max-txn-ops", "heartbeat-interval", "election-timeout", "snapshot-count", "log-level", "debug-listen", "version",
		"log-format", "metrics", "listen-metrics-urls", "enable-pprof", "enable-grpc-gateway", "grpc-keepalive-min-time",
		"grpc-keepalive-interval", "grpc-keepalive-timeout", "max-concurrent-streams", "watch-progress-notify-interval"} {
		if !strings.Contains(out.String(), "--"+f) {
			t.Errorf("--help does not mention --%s", f)
		}
	}
}

func TestFlagErrors(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"unknown flag":       {"--no-such-flag"},
		"stray argument":     {"serve"},
		"bad log level":      {"--log-level", "loud"},
		"empty password":     {"--mesh-password-file", empty},
		"missing password":   {"--mesh-password-file", filepath.Join(t.TempDir(), "absent")},
		"bad client url":     {"--listen-client-urls", "127.0.0.1:2379"},
		"bad voters":         {"--target-voters", "4"},
		"bad compaction":     {"--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"},
		"zero heartbeat":     {"--heartbeat-interval", "0"},
		"election too short": {"--heartbeat-interval", "100", "--election-timeout", "150"},
		"bad log format":     {"--log-format", "xml"},
		"bad metrics level":  {"--metrics", "all"},
		"gateway off":        {"--enable-grpc-gateway=false"},
		"bad metrics url":    {"--listen-metrics-urls", "127.0.0.1:2381"},
		"streams too many":   {"--max-concurrent-streams", "4294967296"},
		"negative keepalive": {"--grpc-keepalive-min-time", "-1s"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, nil, &out, &errb); code != 2 {
			t.Errorf("%s: exit %d, want 2 (stderr %q)", name, code, errb.String())
		} else if errb.Len() == 0 {
			t.Errorf("%s: no error message", name)
		}
	}
}

func TestParseFlags(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"--name", "a", "--peers", "10.0.0.2:2380, 10.0.0.3:2380", "--peer-discovery=false",
		"--mesh-password-file", pw, "--heartbeat-interval", "50", "--election-timeout", "500"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Name != "a" || len(c.Peers) != 2 || c.Peers[1] != "10.0.0.3:2380" || !c.DisablePeerDiscovery ||
		string(c.MeshPassword) != "s3cret" || c.TickInterval != 50*time.Millisecond || c.ElectionTimeout != 500*time.Millisecond {
		t.Fatalf("parsed config = %+v", c)
	}
	if c.MeshListen != "127.0.0.1:2380" || len(c.ListenClientURLs) != 1 || c.ListenClientURLs[0] != "http://127.0.0.1:2379" {
		t.Fatalf("defaults: mesh %q clients %v; want etcd's ports", c.MeshListen, c.ListenClientURLs)
	}
}

func TestServeDebug(t *testing.T) {
	srv, addr, err := serveDebug("127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("profiler: %s\n%s", resp.Status, body)
	}
	if _, _, err := serveDebug(addr, slog.Default()); err == nil {
		t.Fatal("a second profiler on the same address started")
	}
}

func TestObservabilityFlags(t *testing.T) {
	o, err := parseFlags(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Metrics != "basic" || c.GRPCKeepAliveMinTime != 5*time.Second || c.GRPCKeepAliveInterval != 2*time.Hour ||
		c.GRPCKeepAliveTimeout != 20*time.Second || c.MaxConcurrentStreams != 0 || c.WatchProgressNotifyInterval != 10*time.Minute ||
		c.EnablePprof || len(c.ListenMetricsURLs) != 0 || o.logFormat != "text" {
		t.Fatalf("defaults: %+v, log format %q", c, o.logFormat)
	}
	o, err = parseFlags([]string{"--metrics", "extensive", "--listen-metrics-urls", "http://127.0.0.1:2381,http://127.0.0.1:2382",
		"--enable-pprof", "--enable-grpc-gateway", "--grpc-keepalive-min-time", "10s", "--grpc-keepalive-interval", "0",
		"--grpc-keepalive-timeout", "3s", "--max-concurrent-streams", "100", "--watch-progress-notify-interval", "5s",
		"--log-format", "console"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c = o.cfg
	if c.Metrics != "extensive" || len(c.ListenMetricsURLs) != 2 || !c.EnablePprof || c.GRPCKeepAliveMinTime != 10*time.Second ||
		c.GRPCKeepAliveInterval >= 0 || c.GRPCKeepAliveTimeout != 3*time.Second || c.MaxConcurrentStreams != 100 ||
		c.WatchProgressNotifyInterval != 5*time.Second || o.logFormat != "text" {
		t.Fatalf("parsed: %+v, log format %q", c, o.logFormat)
	}
	if o, err = parseFlags([]string{"--max-concurrent-streams", "4294967295"}, nil); err != nil || o.cfg.MaxConcurrentStreams != 0 {
		t.Fatalf("etcd's default stream limit: %v %v, want 0 (unlimited)", o.cfg.MaxConcurrentStreams, err)
	}
}

func TestLogFormatJSON(t *testing.T) {
	var buf bytes.Buffer
	newLogger(&buf, "json", slog.LevelInfo).Info("hello", "k", 1)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["msg"] != "hello" || m["k"] != float64(1) {
		t.Fatalf("json log line %q: %v", buf.String(), err)
	}
	buf.Reset()
	newLogger(&buf, "text", slog.LevelInfo).Info("hello")
	if !strings.Contains(buf.String(), "msg=hello") {
		t.Fatalf("text log line %q", buf.String())
	}
}
