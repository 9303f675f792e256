package main

import (
	"encoding/json"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/bench"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"--clients", "8", "get", "--consistency", "s", "--pids", "10,11", "--endpoints", "a:1, b:2", "--quiet"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Workload != bench.Get || !o.cfg.Serializable || o.cfg.Clients != 8 {
		t.Errorf("cfg = %+v", o.cfg)
	}
	if got := strings.Join(o.endpoints, "|"); got != "a:1|b:2" {
		t.Errorf("endpoints = %q", got)
	}
	if len(o.cfg.CPUPIDs) != 2 || o.cfg.CPUPIDs[1] != 11 || o.cfg.Progress != nil {
		t.Errorf("pids %v, progress %v", o.cfg.CPUPIDs, o.cfg.Progress)
	}
	if o.cfg.Warmup != time.Second || o.conns != 1 || o.cfg.Mix != bench.DefaultMix() {
		t.Errorf("defaults: warmup %v conns %d mix %v", o.cfg.Warmup, o.conns, o.cfg.Mix)
	}
	if o, err := parseFlags([]string{"--workload", "mixed", "--mix", "put:1"}, io.Discard); err != nil || o.cfg.Mix != (bench.Mix{Put: 1}) || o.cfg.Progress == nil {
		t.Errorf("--workload mixed --mix put:1: %+v, %v", o, err)
	}

	bad := [][]string{
		{},
		{"scan"},
		{"put", "get"},
		{"--workload", "put", "get"},
		{"put", "--consistency", "x"},
		{"put", "--clients", "0"},
		{"put", "--conns", "0"},
		{"put", "--value-size", "0"},
		{"put", "--duration", "0s"},
		{"put", "--lease-ttl", "500ms"},
		{"put", "--pids", "1,x"},
		{"put", "--rss-pids", "-3"},
		{"mixed", "--mix", "get"},
		{"put", "--endpoints", " , "},
		{"put", "--no-such-flag"},
	}
	for _, args := range bad {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted bad input", args)
		}
	}
	if _, err := parseFlags([]string{"--help"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
}

func TestHelpNamesEveryWorkload(t *testing.T) {
	var out strings.Builder
	if code := run(t.Context(), []string{"--help"}, io.Discard, &out); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, w := range bench.Workloads() {
		if !strings.Contains(out.String(), "\n  "+string(w)+" ") {
			t.Errorf("help text does not describe workload %s", w)
		}
	}
}

// TestRunOverTCP drives an embedded node through its TCP listener, as the
// binary drives a server process.
func TestRunOverTCP(t *testing.T) {
	node, err := meshkv.Start(t.Context(), meshkv.Config{ListenClientURLs: []string{"http://127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close() })
	ep := node.ClientAddrs()[0]

	var stdout, stderr strings.Builder
	code := run(t.Context(), []string{"put", "--endpoints", ep, "--clients", "4", "--conns", "2",
		"--duration", "500ms", "--warmup", "100ms", "--json", "--quiet"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var res bench.Result
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		t.Fatalf("output is not a JSON result: %v\n%s", err, stdout.String())
	}
	if res.Ops == 0 || res.Errors != 0 || res.Conns != 2 || res.Label != ep {
		t.Errorf("result = %+v", res)
	}

	stdout.Reset()
	stderr.Reset()
	code = run(t.Context(), []string{"lease", "--endpoints", "http://" + ep, "--duration", "1200ms", "--warmup", "0s"}, &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), "throughput") || !strings.Contains(stderr.String(), "ops/s") {
		t.Errorf("text run: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
}
