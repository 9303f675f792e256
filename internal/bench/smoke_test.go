package bench_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/bench"
)

// startNode starts an embedded single meshkv node and returns its in-process
// client.
func startNode(t *testing.T) *clientv3.Client {
	t.Helper()
	return startNodeTCP(t).Client()
}

// startNodeTCP starts an embedded single meshkv node that also listens on a
// loopback port.
func startNodeTCP(t *testing.T) *meshkv.Node {
	t.Helper()
	node, err := meshkv.Start(t.Context(), meshkv.Config{ListenClientURLs: []string{"http://127.0.0.1:0"}})
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		if err := node.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
	})
	return node
}

// TestWorkloadsSmoke runs every workload briefly against an embedded node and
// checks that each measured something and nothing failed.
func TestWorkloadsSmoke(t *testing.T) {
	node := startNodeTCP(t)
	cli := node.Client()
	clients := []*clientv3.Client{cli}
	for _, w := range bench.Workloads() {
		t.Run(string(w), func(t *testing.T) {
			var progress strings.Builder
			cfg := bench.Config{
				Workload:         w,
				Clients:          4,
				Keys:             200,
				Duration:         700 * time.Millisecond,
				Warmup:           200 * time.Millisecond,
				Watchers:         3,
				Locks:            2,
				KeyPrefix:        "smoke/" + string(w) + "/",
				CPUPIDs:          []int{os.Getpid()},
				RSSPIDs:          []int{os.Getpid()},
				Progress:         &progress,
				ProgressInterval: 250 * time.Millisecond,
				Endpoints:        node.ClientAddrs(),
			}
			res, err := bench.Run(t.Context(), cfg, clients)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Errors != 0 || len(res.ErrorSamples) != 0 {
				t.Errorf("errors %d: %v", res.Errors, res.ErrorSamples)
			}
			if res.Ops == 0 || res.OpsPerSec <= 0 {
				t.Fatalf("no operations measured: %+v", res)
			}
			if w == bench.Load {
				if res.Ops != 200 {
					t.Errorf("load wrote %d keys, want 200", res.Ops)
				}
				got, err := cli.Get(t.Context(), cfg.KeyPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
				if err != nil || got.Count != 200 {
					t.Errorf("keys under %s after load: %v, %v; want 200", cfg.KeyPrefix, got, err)
				}
			} else if res.Window < cfg.Duration || res.Window > cfg.Duration+500*time.Millisecond {
				t.Errorf("window %v, want about %v", res.Window, cfg.Duration)
			}
			switch w {
			case bench.Watch:
				if res.Events == 0 || res.EventsMissing != 0 {
					t.Errorf("events %d received, %d missing; want some and none missing", res.Events, res.EventsMissing)
				}
				if res.Latency.Count != res.Events {
					t.Errorf("event latencies %d, events %d", res.Latency.Count, res.Events)
				}
				if res.Kinds["put"].Count != res.Ops {
					t.Errorf("writer latencies %d, ops %d", res.Kinds["put"].Count, res.Ops)
				}
			case bench.Txn:
				if res.Latency.Count != res.Ops+res.Conflicts {
					t.Errorf("latencies %d, want ops %d + conflicts %d", res.Latency.Count, res.Ops, res.Conflicts)
				}
			case bench.Mixed:
				var sum uint64
				for _, k := range []string{"get", "put", "txn"} {
					if res.Kinds[k].Count == 0 {
						t.Errorf("mixed ran no %s", k)
					}
					sum += res.Kinds[k].Count
				}
				if sum != res.Latency.Count {
					t.Errorf("per-kind latencies sum to %d, overall %d", sum, res.Latency.Count)
				}
			default:
				if res.Latency.Count != res.Ops {
					t.Errorf("latencies %d, ops %d", res.Latency.Count, res.Ops)
				}
			}
			if l := res.Latency; !(l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
				t.Errorf("quantiles out of order: %+v", l)
			}
			if res.CPU == nil || res.CPU.Time <= 0 || res.CPU.MsPer1000Ops <= 0 {
				t.Errorf("cpu = %+v, want time used by this process", res.CPU)
			}
			if res.RSS == nil || res.RSS.Bytes <= 0 {
				t.Errorf("rss = %+v", res.RSS)
			}
			if w != bench.Load && !strings.Contains(progress.String(), "ops/s") { // a load of 200 keys may end before the first line
				t.Errorf("no progress line; got %q", progress.String())
			}
			var text strings.Builder
			if err := res.WriteText(&text); err != nil || !strings.Contains(text.String(), "throughput") {
				t.Errorf("WriteText = %v:\n%s", err, text.String())
			}
		})
	}
}

// TestRateCapsThroughput checks the pacing: a capped run does about as many
// operations as the rate allows, never many more.
func TestRateCapsThroughput(t *testing.T) {
	cli := startNode(t)
	res, err := bench.Run(t.Context(), bench.Config{
		Workload: bench.Put, Clients: 4, Rate: 100, Duration: time.Second, Warmup: 200 * time.Millisecond,
	}, []*clientv3.Client{cli})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops > 115 || res.Ops < 50 {
		t.Errorf("%d ops in %v at rate 100/s, want about 100", res.Ops, res.Window)
	}
}

func TestRunErrors(t *testing.T) {
	cli := startNode(t)
	clients := []*clientv3.Client{cli}
	if _, err := bench.Run(t.Context(), bench.Config{Workload: "nope"}, clients); !errors.Is(err, bench.ErrInvalidConfig) {
		t.Errorf("bad workload: %v, want ErrInvalidConfig", err)
	}
	if _, err := bench.Run(t.Context(), bench.Config{Workload: bench.Put}, nil); !errors.Is(err, bench.ErrNoClients) {
		t.Errorf("no clients: %v, want ErrNoClients", err)
	}
	// A pid that cannot exist (above the kernel's pid_max limit).
	if _, err := bench.Run(t.Context(), bench.Config{Workload: bench.Put, CPUPIDs: []int{1 << 30}}, clients); !errors.Is(err, bench.ErrProc) {
		t.Errorf("missing pid: %v, want ErrProc", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := bench.Run(ctx, bench.Config{Workload: bench.Put, Clients: 2, Duration: time.Hour}, clients)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled run: %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return 30s after its context was cancelled")
	}
}

// TestFailingServerEndsRun checks that runs against a server that is gone
// end promptly with an error: the preload and the load stop at failures.
func TestFailingServerEndsRun(t *testing.T) {
	node, err := meshkv.Start(t.Context(), meshkv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cli := node.Client()
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	for _, w := range []bench.Workload{bench.Load, bench.Get} {
		start := time.Now()
		_, err := bench.Run(t.Context(), bench.Config{Workload: w, Clients: 4, Keys: 1000, OpTimeout: 2 * time.Second}, []*clientv3.Client{cli})
		if err == nil {
			t.Errorf("%s on a closed node: no error", w)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s on a closed node took %v", w, d)
		}
	}
}

// TestScrapeDuringRun scrapes a node's /metrics while a put workload runs.
func TestScrapeDuringRun(t *testing.T) {
	node, err := meshkv.Start(t.Context(), meshkv.Config{ListenClientURLs: []string{"http://127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	cfg := bench.Config{
		Workload:       bench.Put,
		Clients:        4,
		Keys:           100,
		Duration:       time.Second,
		ScrapeURLs:     []string{"http://" + node.ClientAddrs()[0] + "/metrics"},
		ScrapeInterval: 100 * time.Millisecond,
	}
	res, err := bench.Run(t.Context(), cfg, []*clientv3.Client{node.Client()})
	if err != nil {
		t.Fatal(err)
	}
	// A scrape takes a few ms, but far longer under the race detector on a
	// loaded machine, and a scraper waits for one before the next: ask for
	// more than the first.
	s := res.Scrapes
	if s == nil || s.Count < 2 || s.Failed != 0 || s.Bytes == 0 || s.Latency.Count != s.Count {
		t.Fatalf("scrapes %+v, want whole pages, up to 10", s)
	}
	var out strings.Builder
	if err := res.WriteText(&out); err != nil || !strings.Contains(out.String(), "scrapes") {
		t.Fatalf("report lacks the scrapes: %v\n%s", err, out.String())
	}
	if err := (bench.Config{Workload: bench.Put, ScrapeURLs: []string{"localhost:2379"}}).Validate(); err == nil {
		t.Error("a scrape URL without a scheme was accepted")
	}
}
