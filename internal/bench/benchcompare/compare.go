package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/bench"
)

// comparer runs the comparison and collects its results.
type comparer struct {
	o       *options
	log     io.Writer // progress
	records []record
	notes   []string // errors and anomalies, printed under the tables
	step    int
	steps   int
}

// record is one run, as written by --json.
type record struct {
	Section  string        `json:"section"`
	Scenario string        `json:"scenario"`
	System   string        `json:"system"`
	Round    int           `json:"round"`
	Result   *bench.Result `json:"result,omitempty"`
	Error    string        `json:"error,omitempty"`
}

func (c *comparer) writeJSON(path string) error {
	b, err := json.MarshalIndent(c.records, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// target is a system under test.
type target struct {
	name string
	// dial returns conns clients and how to release them.
	dial func(ctx context.Context, conns int) ([]*clientv3.Client, func(), error)
	pids []int // server processes, for CPU per operation
	// compactAt are endpoints to compact the history through after each
	// run (nil: no compaction).
	compactAt []string
	// prepare runs before each run (nil: nothing), such as switching
	// authentication on or off.
	prepare func(ctx context.Context) error
	// endpoints are the client URLs, for workloads that dial themselves.
	endpoints []string
	// scrape are metrics URLs fetched every second during each run.
	scrape []string
}

// clusterTarget is a target whose clients connect to endpoints.
func clusterTarget(name string, c *cluster, endpoints []string) *target {
	return &target{
		name: name,
		dial: func(ctx context.Context, conns int) ([]*clientv3.Client, func(), error) {
			cl, err := bench.Dial(ctx, endpoints, conns)
			if err != nil {
				return nil, nil, err
			}
			return cl, func() { bench.CloseAll(cl) }, nil
		},
		pids:      c.pids(),
		compactAt: c.endpoints(),
	}
}

// scenario is one workload and what its results feed.
type scenario struct {
	name  string
	cfg   bench.Config
	conns int
	// take adds the result's numbers to the report's metrics.
	take func(t *target, r *bench.Result)
}

// runOnce runs a scenario once on a target. Only the end of ctx is an error;
// other failures become notes.
func (c *comparer) runOnce(ctx context.Context, section string, sc scenario, t *target, round int) error {
	c.step++
	rec := record{Section: section, Scenario: sc.name, System: t.name, Round: round}
	cfg := sc.cfg
	cfg.CPUPIDs = t.pids
	cfg.ScrapeURLs = t.scrape
	if cfg.Duration == 0 {
		cfg.Duration = c.o.duration
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = c.o.warmup
	}
	if cfg.ValueSize == 0 {
		cfg.ValueSize = c.o.valueSize
	}
	var res *bench.Result
	var err error
	if t.prepare != nil {
		err = t.prepare(ctx)
	}
	if err == nil {
		res, err = c.runBench(ctx, cfg, sc.conns, t)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		rec.Error = err.Error()
		c.records = append(c.records, rec)
		c.note("%s round %d on %s failed: %v", sc.name, round, t.name, err)
		fmt.Fprintf(c.log, "[%d/%d] %-10s round %d %-12s FAILED: %v\n", c.step, c.steps, sc.name, round, t.name, err)
		return nil
	}
	rec.Result = res
	c.records = append(c.records, rec)
	fmt.Fprintf(c.log, "[%d/%d] %-10s round %d %-12s %10s ops/s  p50 %-7s p99 %-7s errors %d\n",
		c.step, c.steps, sc.name, round, t.name, bench.FormatRate(res.OpsPerSec),
		bench.FormatDuration(res.Latency.P50), bench.FormatDuration(res.Latency.P99), res.Errors)
	if res.Errors > 0 {
		first := ""
		if len(res.ErrorSamples) > 0 {
			first = fmt.Sprintf(" (first: %d × %s)", res.ErrorSamples[0].Count, res.ErrorSamples[0].Message)
		}
		c.note("%s round %d on %s: %d failed operations%s", sc.name, round, t.name, res.Errors, first)
	}
	if res.EventsMissing > 0 {
		c.note("%s round %d on %s: %d watch events never arrived", sc.name, round, t.name, res.EventsMissing)
	}
	if sc.take != nil {
		sc.take(t, res)
	}
	if t.compactAt != nil {
		if err := compact(ctx, t.compactAt); err != nil && ctx.Err() == nil {
			c.note("compacting %s after %s: %v", t.name, sc.name, err)
		}
	}
	return nil
}

func (c *comparer) runBench(ctx context.Context, cfg bench.Config, conns int, t *target) (*bench.Result, error) {
	clients, release, err := t.dial(ctx, conns)
	if err != nil {
		return nil, err
	}
	defer release()
	return bench.Run(ctx, cfg, clients)
}

func (c *comparer) note(format string, args ...any) {
	c.notes = append(c.notes, fmt.Sprintf(format, args...))
}

// interleave runs every scenario for every round on every target in turn:
// A B A B for one scenario, then the next scenario.
func (c *comparer) interleave(ctx context.Context, section string, scs []scenario, targets []*target) error {
	for _, sc := range scs {
		for round := 1; round <= c.o.rounds; round++ {
			for _, t := range targets {
				if err := c.runOnce(ctx, section, sc, t, round); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// compare runs the selected sections and returns the markdown report.
func (c *comparer) compare(ctx context.Context) (string, error) {
	o := c.o
	if o.build {
		if err := c.build(ctx); err != nil {
			return "", err
		}
	}
	etcdBin, meshkvBin := filepath.Join(o.bin, "etcd"), filepath.Join(o.bin, "meshkv")
	for _, b := range []string{etcdBin, meshkvBin} {
		if !fileExists(b) {
			return "", fmt.Errorf("%s does not exist (drop --no-build)", b)
		}
	}
	var out strings.Builder
	writeHeader(&out, o, etcdBin, meshkvBin)

	m := newMetrics(o)
	tableScs, lineScs, embScs := c.scenarios(m)
	c.steps = o.rounds * (len(tableScs)*2*btoi(o.sections[sectionTable]) +
		len(lineScs)*3*btoi(o.sections[sectionLine]) + len(embScs)*btoi(o.sections[sectionEmbedded]))
	c.steps += 2 * btoi(o.sections[sectionRSS])
	scrapeScs := c.scrapeScenarios(m)
	c.steps += o.rounds * len(scrapeScs) * 2 * btoi(o.sections[sectionScrape])

	var err error
	sm := newSecMetrics()
	if o.sections[sectionSecurity] {
		c.steps += o.rounds * 2 * 5
		err = c.security(ctx, etcdBin, meshkvBin, sm)
	}
	if err == nil && (o.sections[sectionTable] || o.sections[sectionLine] || o.sections[sectionScrape]) {
		err = c.clusterSections(ctx, etcdBin, meshkvBin, tableScs, lineScs, scrapeScs)
	}
	if err == nil && o.sections[sectionEmbedded] {
		err = c.embedded(ctx, embScs)
	}
	if err == nil && o.sections[sectionRSS] {
		err = c.memory(ctx, etcdBin, meshkvBin, m)
	}
	if o.sections[sectionSecurity] {
		writeSecurity(&out, sm)
	}
	writeBody(&out, o, m, c.notes)
	return out.String(), err
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// clusterSections runs the main comparison on a 3-member etcd and a 3-node
// meshkv, then the line topology against the same meshkv cluster.
func (c *comparer) clusterSections(ctx context.Context, etcdBin, meshkvBin string, tableScs, lineScs, scrapeScs []scenario) error {
	o := c.o
	full := []meshkvMember{{name: "a", peers: []int{1, 2}, clusterSize: 3}, {name: "b", peers: []int{0, 2}, clusterSize: 3}, {name: "c", peers: []int{0, 1}, clusterSize: 3}}
	fmt.Fprintln(c.log, "starting 3-node meshkv")
	mk, err := startMeshkv(ctx, "meshkv", meshkvBin, o.where(), full, true, false)
	if err != nil {
		return err
	}
	defer mk.stop()
	if o.sections[sectionTable] {
		fmt.Fprintln(c.log, "starting 3-member etcd")
		et, err := startEtcd(ctx, etcdBin, o.where(), 3)
		if err != nil {
			return err
		}
		targets := []*target{clusterTarget("etcd", et, et.endpoints()), clusterTarget("meshkv", mk, mk.endpoints())}
		err = c.interleave(ctx, sectionTable, tableScs, targets)
		et.stop()
		if err != nil {
			return err
		}
	}
	if o.sections[sectionScrape] {
		if err := c.scrapeCost(ctx, mk, scrapeScs); err != nil {
			return err
		}
	}
	if !o.sections[sectionLine] {
		return nil
	}
	return c.line(ctx, meshkvBin, mk, lineScs)
}

// scrapeCost runs the put workload on the 3-node meshkv with and without a
// scraper fetching every node's /metrics once a second. The order
// alternates from round to round (off on, on off, ...), so that a drift of
// the machine's load does not favour either.
func (c *comparer) scrapeCost(ctx context.Context, mk *cluster, scs []scenario) error {
	off := clusterTarget("no-scrape", mk, mk.endpoints())
	on := clusterTarget("scrape-1s", mk, mk.endpoints())
	for _, ep := range mk.endpoints() {
		on.scrape = append(on.scrape, "http://"+ep+"/metrics")
	}
	for _, sc := range scs {
		for round := 1; round <= c.o.rounds; round++ {
			order := []*target{off, on}
			if round%2 == 0 {
				order = []*target{on, off}
			}
			for _, t := range order {
				if err := c.runOnce(ctx, sectionScrape, sc, t, round); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// line compares put latency through a follower of the full mesh with a line
// A–B–C whose leader is C (A reaches it only through B) or B.
func (c *comparer) line(ctx context.Context, meshkvBin string, mk *cluster, scs []scenario) error {
	leader, err := mk.leaderOf(ctx, 0)
	if err != nil {
		return mk.failure(err)
	}
	follower := mk.procs[(leader+1)%len(mk.procs)]
	direct := clusterTarget("direct", mk, []string{follower.client})

	// Start order decides the leader: the first node founds the cluster
	// alone and leads it; the others join as learners and are promoted.
	fmt.Fprintln(c.log, "starting line A–B–C with leader C")
	far, err := startMeshkv(ctx, "linec", meshkvBin, c.o.where(), []meshkvMember{
		{name: "C", clusterSize: 1},
		{name: "B", peers: []int{0}, clusterSize: 3},
		{name: "A", peers: []int{1}, clusterSize: 3},
	}, false, true)
	if err != nil {
		return err
	}
	defer far.stop()
	fmt.Fprintln(c.log, "starting line A–B–C with leader B")
	mid, err := startMeshkv(ctx, "lineb", meshkvBin, c.o.where(), []meshkvMember{
		{name: "B", clusterSize: 1},
		{name: "A", peers: []int{0}, clusterSize: 3},
		{name: "C", peers: []int{0}, clusterSize: 3},
	}, false, true)
	if err != nil {
		return err
	}
	defer mid.stop()
	for _, l := range []struct {
		c          *cluster
		a, want    int
		wantLeader string
	}{{far, 2, 0, "C"}, {mid, 1, 0, "B"}} {
		got, err := l.c.leaderOf(ctx, l.a)
		if err != nil {
			return l.c.failure(err)
		}
		if got != l.want {
			c.note("line %s: the leader is %s, not %s as started", l.c.name, l.c.procs[got].name, l.wantLeader)
		}
	}
	targets := []*target{
		direct,
		clusterTarget("line-far", far, []string{far.procs[2].client}),
		clusterTarget("line-mid", mid, []string{mid.procs[1].client}),
	}
	return c.interleave(ctx, sectionLine, scs, targets)
}

// embedded runs the reference workloads on an in-process single node.
func (c *comparer) embedded(ctx context.Context, scs []scenario) error {
	fmt.Fprintln(c.log, "starting embedded single node")
	node, err := meshkv.Start(ctx, meshkv.Config{})
	if err != nil {
		return fmt.Errorf("embedded node: %w", err)
	}
	defer node.Close()
	t := &target{
		name: "embedded",
		dial: func(context.Context, int) ([]*clientv3.Client, func(), error) {
			return []*clientv3.Client{node.Client()}, func() {}, nil
		},
		compactAt: nil,
	}
	for _, sc := range scs {
		for round := 1; round <= c.o.rounds; round++ {
			if err := c.runOnce(ctx, sectionEmbedded, sc, t, round); err != nil {
				return err
			}
		}
	}
	return nil
}

// memory loads the key space into a fresh cluster of each system, one at a
// time, and reads the servers' RSS before and after.
func (c *comparer) memory(ctx context.Context, etcdBin, meshkvBin string, m *metrics) error {
	start := map[string]func() (*cluster, error){
		"etcd": func() (*cluster, error) { return startEtcd(ctx, etcdBin, c.o.where(), 3) },
		"meshkv": func() (*cluster, error) {
			return startMeshkv(ctx, "meshkv-rss", meshkvBin, c.o.where(), []meshkvMember{
				{name: "a", peers: []int{1, 2}, clusterSize: 3}, {name: "b", peers: []int{0, 2}, clusterSize: 3}, {name: "c", peers: []int{0, 1}, clusterSize: 3},
			}, true, false)
		},
	}
	for _, name := range []string{"etcd", "meshkv"} {
		fmt.Fprintf(c.log, "starting a fresh %s for the memory run\n", name)
		cl, err := start[name]()
		if err != nil {
			return err
		}
		err = c.loadAndMeasure(ctx, name, cl, m)
		cl.stop()
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *comparer) loadAndMeasure(ctx context.Context, name string, cl *cluster, m *metrics) error {
	idle, err := bench.ProcessRSS(cl.pids())
	if err != nil {
		return err
	}
	m.rssIdle.add(name, float64(idle))
	sc := scenario{
		name:  "load",
		conns: rssLoadConns,
		cfg: bench.Config{
			Workload: bench.Load, Clients: rssLoadClient, Keys: c.o.rssKeys, KeyPrefix: "rss/",
			RSSPIDs: cl.pids(), OpTimeout: 30 * time.Second,
		},
		take: func(_ *target, r *bench.Result) {
			m.loadRate.add(name, r.OpsPerSec)
			if r.RSS != nil {
				m.rssLoaded.add(name, float64(r.RSS.Bytes))
			}
		},
	}
	t := clusterTarget(name, cl, cl.endpoints())
	t.compactAt = nil
	return c.runOnce(ctx, sectionRSS, sc, t, 1)
}
