//go:build !race

// Real mesh routers: mesh itself has data races (see mesh_test.go), so the
// soak benchmark is left out of -race runs.

package meshkv_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/soak"
	"github.com/meshkv/meshkv/kvapi"
)

// Soak workload: Put/Delete churn over a bounded key space.
const (
	soakKeys          = 10_000
	soakValueLen      = 256
	soakWorkers       = 16
	soakRate          = 2000 // operations per second offered, all workers together
	soakSnapshotCount = 10_000
	soakSampleEvery   = time.Second
	// soakBound is how much the late average of memory, and the late peak
	// of the raft log, may exceed the early ones.
	soakBound = 1.5
)

// BenchmarkSoakChurn runs sustained Put/Delete churn (3:1) at a steady rate
// over a bounded key space on a 3-node cluster with periodic auto-compaction and SnapshotCount 10000,
// sampling every second the process RSS (all three nodes live in this
// process), the Go heap in use, the longest raft log above a snapshot, and
// the store's revision and compacted revision. It prints the table and fails
// unless, after the warm-up, the last third of the run stays within 1.5× of
// the first third, memory (RSS and heap) on average and the raft log at its
// peak (the log is a sawtooth between snapshots); unless the store never
// keeps more history than the compaction window allows; or if more than 1%
// of the operations fail.
//
// MESHKV_SOAK_DURATION sets the run time (default 2m; warm-up a quarter of
// it, at least 30s). MESHKV_SOAK_RATE sets the operations per second offered
// (default 2000). MESHKV_SOAK_COMPACTION sets the auto-compaction as
// mode:retention (default periodic:10s; revision mode compacts only every
// five minutes, as etcd's).
//
//	go test -run '^$' -bench BenchmarkSoak -benchtime=1x .
func BenchmarkSoakChurn(b *testing.B) {
	dur := 2 * time.Minute
	if s := os.Getenv("MESHKV_SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			b.Fatalf("MESHKV_SOAK_DURATION=%q: want a positive duration", s)
		}
		dur = d
	}
	mode, retention := "periodic", "10s"
	if s := os.Getenv("MESHKV_SOAK_COMPACTION"); s != "" {
		var ok bool
		if mode, retention, ok = strings.Cut(s, ":"); !ok {
			b.Fatalf("MESHKV_SOAK_COMPACTION=%q: want mode:retention, such as periodic:10s", s)
		}
	}
	rate := envInt(b, "MESHKV_SOAK_RATE", soakRate)
	warmup := max(dur/4, 30*time.Second)
	if warmup >= dur {
		b.Fatalf("a run of %v leaves nothing after the %v warm-up", dur, warmup)
	}
	for range b.N {
		soakRun(b, dur, warmup, rate, mode, retention)
	}
}

func soakRun(b *testing.B, dur, warmup time.Duration, rate int, mode, retention string) {
	_, nodes := startMeshCluster(b, 3, func(i int, c *meshkv.Config) {
		c.SnapshotCount = soakSnapshotCount
		c.AutoCompactionMode = mode
		c.AutoCompactionRetention = retention
	})
	var ops, errs atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	value := strings.Repeat("v", soakValueLen)
	// Each worker paces itself to its share of the rate, never bursting to
	// catch up: memory follows the history kept, which follows the write
	// rate, so a steady rate makes early and late samples comparable.
	interval := time.Duration(float64(time.Second) * soakWorkers / float64(rate))
	for w := range soakWorkers {
		cli := nodes[w%len(nodes)].Client()
		rng := rand.New(rand.NewPCG(uint64(w), 1))
		wg.Go(func() {
			next := time.Now()
			for ctx.Err() == nil {
				if d := time.Until(next); d > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(d):
					}
				}
				next = next.Add(interval)
				if now := time.Now(); next.Before(now.Add(-interval)) {
					next = now // far behind: no burst to catch up
				}
				key := fmt.Sprintf("soak/%05d", rng.IntN(soakKeys))
				octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
				var err error
				if rng.IntN(4) == 0 {
					_, err = cli.Delete(octx, key)
				} else {
					_, err = cli.Put(octx, key, value)
				}
				ocancel()
				switch {
				case err == nil:
					ops.Add(1)
				case ctx.Err() == nil:
					errs.Add(1)
				}
			}
		})
	}

	series := &soak.Series{Warmup: warmup}
	start := time.Now()
	b.ResetTimer()
	tick := time.NewTicker(soakSampleEvery)
	defer tick.Stop()
	for now := range tick.C {
		series.Add(soakSample(b, nodes, now.Sub(start), ops.Load(), errs.Load()))
		if now.Sub(start) >= dur {
			break
		}
	}
	b.StopTimer()
	cancel()
	wg.Wait()

	var table strings.Builder
	if err := series.WriteTable(&table); err != nil {
		b.Fatal(err)
	}
	// Printed, not logged: benchmark logs are cut to a few lines without -v.
	fmt.Printf("BenchmarkSoakChurn: 3 nodes, %d keys, %d workers offering %d ops/s, SnapshotCount %d, auto-compaction %s %s, warm-up %v (rows marked w)\n%s",
		soakKeys, soakWorkers, rate, soakSnapshotCount, mode, retention, warmup, table.String())

	samples := series.Samples()
	last := samples[len(samples)-1]
	elapsed := last.At
	b.ReportMetric(float64(last.Ops)/elapsed.Seconds(), "ops/s")
	var failures []string
	check := func(name string, f func(soak.Sample) float64, peak bool, unit float64, metric string) {
		tr, err := series.Compare(name, f)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Println("  " + tr.String())
		r := tr.Ratio()
		if peak {
			r = tr.MaxRatio()
		}
		b.ReportMetric(tr.LastAvg/unit, metric)
		b.ReportMetric(r, name+"-ratio")
		if r > soakBound {
			failures = append(failures, fmt.Sprintf("%s grew ×%.2f (bound ×%.1f): %v", name, r, soakBound, tr))
		}
	}
	check("rss", func(x soak.Sample) float64 { return float64(x.RSS) }, false, 1<<20, "rss-MiB")
	check("heap", func(x soak.Sample) float64 { return float64(x.HeapInuse) }, false, 1<<20, "heap-MiB")
	check("log", func(x soak.Sample) float64 { return float64(x.LogEntries) }, true, 1, "log-entries")
	if msg := checkCompaction(b, series, mode, retention); msg != "" {
		failures = append(failures, msg)
	}
	if last.Errors*100 > last.Ops {
		failures = append(failures, fmt.Sprintf("%d of %d operations failed", last.Errors, last.Ops+last.Errors))
	}
	if len(failures) > 0 {
		b.Fatal(strings.Join(failures, "\n"))
	}
}

// checkCompaction checks that auto-compaction keeps the MVCC history
// bounded: after the warm-up, the store never keeps more revisions than were
// written in the last compaction window (two periods in periodic mode; the
// retention plus five minutes of writes in revision mode), plus slack for
// the compaction's own proposal. The history itself follows the write rate,
// which on a shared machine is not steady, so it is not compared with the
// early samples. It returns a failure message, or "".
func checkCompaction(tb testing.TB, series *soak.Series, mode, retention string) string {
	tb.Helper()
	ac, err := kvapi.ParseAutoCompaction(mode, retention)
	if err != nil {
		tb.Fatal(err)
	}
	var window time.Duration
	var keep int64
	switch ac.Mode {
	case kvapi.CompactionPeriodic:
		window = 2*ac.Period + 5*time.Second
	case kvapi.CompactionRevision:
		window, keep = 5*time.Minute+5*time.Second, ac.Revisions
	default:
		return "the soak needs auto-compaction"
	}
	samples := series.Samples()
	if samples[len(samples)-1].CompactRevision == 0 {
		return "the store was never compacted"
	}
	checked, worst := 0, 0.0
	for _, x := range samples {
		if x.At < series.Warmup {
			continue
		}
		p, ok := series.Before(x.At - window)
		if !ok {
			continue
		}
		bound := x.Revision - p.Revision + keep + 100
		worst = max(worst, float64(x.History())/float64(bound))
		checked++
		if x.History() > bound {
			return fmt.Sprintf("at %v the store keeps %d revisions, more than the %d written in the last %v (compaction %s %s)",
				x.At, x.History(), bound, window, mode, retention)
		}
	}
	fmt.Printf("  history: at most %.0f%% of the revisions written in the last %v, over %d samples\n", 100*worst, window, checked)
	return ""
}

// soakSample reads the process's memory and the nodes' raft and store
// numbers.
func soakSample(tb testing.TB, nodes []*meshkv.Node, at time.Duration, ops, errs uint64) soak.Sample {
	tb.Helper()
	rss, err := soak.RSS()
	if err != nil {
		tb.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	x := soak.Sample{At: at, RSS: rss, HeapInuse: ms.HeapInuse, Ops: ops, Errors: errs}
	for _, nd := range nodes {
		s := nd.Stats()
		x.LogEntries = max(x.LogEntries, s.LogEntries)
		if s.Leader == nd.ID() {
			x.Revision, x.CompactRevision = s.Revision, s.CompactRevision
		}
	}
	if x.Revision == 0 { // no leader this instant: any node's view
		s := nodes[0].Stats()
		x.Revision, x.CompactRevision = s.Revision, s.CompactRevision
	}
	return x
}
