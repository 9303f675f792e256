// Command chaos runs meshkv's fault-injection scenarios against a real
// multi-process cluster and reports whether meshkv stayed correct
// (linearizable key-value operations, safe locks, complete watches, no lost
// acknowledged writes) and how available it stayed. The cluster runs on
// loopback behind per-link TCP proxies (--net proxy) or in network
// namespaces with faults in the kernel (--net netns); the same scenarios
// can run against etcd (--flavor etcd) for comparison.
//
// Usage:
//
//	go run ./chaos list
//	go run ./chaos run <scenario>... | all | short | short-netns | kernel | literature [flags]
//	go run ./chaos selftest [flags]
//	go run ./chaos build-etcd [--out DIR]
//	go run ./chaos cleanup
//	go run ./chaos table [--summary] FILE.json...
//
// Each run prints a table (scenario, operations ok/failed/indeterminate,
// checks passed, longest unavailability during a fault, longest write gap
// per member, median gap per fault, slowest recovery; with --repeat a
// markdown table too) and exits 0 when every applicable check passed, 1 on
// any violation, 2 when the harness or the cluster failed (no violation
// found), 3 when a check was inconclusive. Skipped runs (not applicable, or
// netns mode unavailable) are listed as skipped and do not change the exit
// status. See chaos/README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/meshkv/meshkv/chaos/cluster"
	"github.com/meshkv/meshkv/chaos/scenario"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK           = 0
	exitViolation    = 1
	exitError        = 2
	exitInconclusive = 3
	exitUsage        = 64
)

type flags struct {
	bin            string
	seed           int64
	seedSet        bool
	out            string
	keep           bool
	jsonOut        bool
	hold           time.Duration
	checkTimeout   time.Duration
	maxUnavailable time.Duration
	nodeLog        string
	verbose        bool
	heartbeat      time.Duration
	election       time.Duration
	net            string
	flavor         string
	etcdBin        string
	repeat         int
	markdown       bool
	starve         string
	starveMethod   string
	buildOut       string
	summary        bool
}

func newFlagSet(f *flags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.bin, "bin", "", "meshkv `binary` to run (default: build ./cmd/meshkv into a temporary directory)")
	fs.Func("seed", "`seed` for every random choice (default: from the clock; printed so a run can be replayed)", func(s string) error {
		_, err := fmt.Sscan(s, &f.seed)
		f.seedSet = err == nil
		return err
	})
	fs.StringVar(&f.out, "out", "chaos-out", "`directory` for failed runs' node logs, histories and visualizations")
	fs.BoolVar(&f.keep, "keep", false, "keep node logs of passing runs too")
	fs.BoolVar(&f.jsonOut, "json", false, "print the reports as JSON on stdout (the table goes to stderr)")
	fs.DurationVar(&f.hold, "hold", scenario.DefaultHold, "how long each fault lasts")
	fs.DurationVar(&f.checkTimeout, "check-timeout", scenario.DefaultCheckTimeout, "limit of the linearizability search per run")
	fs.DurationVar(&f.maxUnavailable, "max-unavailable", 0, "fail a run when a fault leaves the cluster this long without a successful write (0: only report)")
	fs.StringVar(&f.nodeLog, "node-log-level", "info", "meshkv nodes' --log-level")
	fs.BoolVar(&f.verbose, "v", false, "log progress (cuts, heals, kills, recoveries) to stderr")
	fs.DurationVar(&f.heartbeat, "heartbeat", 0, "nodes' raft heartbeat (default: 50ms with --net proxy, the binary's 100ms with --net netns)")
	fs.DurationVar(&f.election, "election-timeout", 0, "nodes' raft election timeout (default: 500ms with --net proxy, the binary's 1s with --net netns)")
	fs.StringVar(&f.net, "net", "proxy", "network `mode`: proxy (loopback, per-link TCP proxies, no root) or netns (a namespace per member, kernel-level faults, root)")
	fs.StringVar(&f.flavor, "flavor", "meshkv", "server `software`: meshkv, or etcd for comparison (needs --net netns)")
	fs.StringVar(&f.etcdBin, "etcd-bin", "", "etcd `binary` for --flavor etcd (default: build tests/'s etcd into a temporary directory)")
	fs.IntVar(&f.repeat, "repeat", 1, "run every scenario `N` times (seeds seed, seed+1, ...) and print a markdown table")
	fs.BoolVar(&f.markdown, "markdown", false, "print the markdown table even without --repeat")
	fs.StringVar(&f.starve, "starve", "", "saturate the CPU of one member during the faults: `leader` or follower")
	fs.StringVar(&f.starveMethod, "starve-method", "quota", "how to saturate a member's CPU: `quota` (a cgroup quota of 1% of one CPU) or pin (pinned to one CPU with busy processes at nice -20; also takes that CPU from everything else)")
	fs.StringVar(&f.buildOut, "out-bin", "bin", "build-etcd: `directory` for the etcd binary")
	fs.BoolVar(&f.summary, "summary", false, "table: one row per scenario, flavor and network instead of one per run")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage:\n  chaos list\n  chaos run <scenario>... | all | short | short-netns | kernel | literature [flags]\n"+
			"  chaos selftest [flags]   (stale reads on purpose: the checkers must catch them)\n"+
			"  chaos build-etcd [--out-bin DIR]   (builds etcd from tests/go.mod into DIR/etcd)\n"+
			"  chaos cleanup            (removes namespaces and cgroups left by chaos runs that died)\n"+
			"  chaos table [--summary] FILE.json...   (markdown table of reports saved with --json)\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// parse accepts flags before, between and after the positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	var f flags
	fs := newFlagSet(&f, stderr)
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	if len(pos) == 0 {
		fs.Usage()
		return exitUsage
	}
	var scs []scenario.Scenario
	switch pos[0] {
	case "list":
		list(stdout)
		return exitOK
	case "build-etcd":
		if len(pos) > 1 {
			fmt.Fprintf(stderr, "chaos: build-etcd takes no arguments\n")
			return exitUsage
		}
		bin, err := buildEtcd(context.Background(), f.buildOut, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "chaos: %v\n", err)
			return exitError
		}
		fmt.Fprintln(stdout, bin)
		return exitOK
	case "table":
		return table(pos[1:], f.summary, stdout, stderr)
	case "cleanup":
		removed, err := cluster.RemoveStale()
		for _, r := range removed {
			fmt.Fprintln(stdout, "removed", r)
		}
		if err != nil {
			fmt.Fprintf(stderr, "chaos: %v\n", err)
			return exitError
		}
		return exitOK
	case "run":
		if scs, err = selectScenarios(pos[1:]); err != nil {
			fmt.Fprintf(stderr, "chaos: %v\n", err)
			return exitUsage
		}
	case "selftest":
		if len(pos) > 1 {
			fmt.Fprintf(stderr, "chaos: selftest takes no arguments\n")
			return exitUsage
		}
	default:
		fmt.Fprintf(stderr, "chaos: unknown command %q (want list, run, selftest, build-etcd or cleanup)\n", pos[0])
		return exitUsage
	}
	mode, err := cluster.ParseNet(f.net)
	if err != nil {
		fmt.Fprintf(stderr, "chaos: --net: %v\n", err)
		return exitUsage
	}
	flavor, err := cluster.ParseFlavor(f.flavor)
	if err != nil {
		fmt.Fprintf(stderr, "chaos: --flavor: %v\n", err)
		return exitUsage
	}
	if flavor == cluster.Etcd && mode != cluster.Netns {
		fmt.Fprintf(stderr, "chaos: --flavor etcd needs --net netns (etcd advertises one peer URL per member: no room for a proxy per link)\n")
		return exitUsage
	}
	if flavor == cluster.Etcd && pos[0] == "selftest" {
		fmt.Fprintf(stderr, "chaos: selftest checks the harness against meshkv only\n")
		return exitUsage
	}
	starveMethod, err := cluster.ParseStarveMethod(f.starveMethod)
	if err != nil {
		fmt.Fprintf(stderr, "chaos: --starve-method: %v\n", err)
		return exitUsage
	}
	switch f.starve {
	case "", scenario.StarveLeader, scenario.StarveFollower:
	default:
		fmt.Fprintf(stderr, "chaos: --starve %q: want leader or follower\n", f.starve)
		return exitUsage
	}
	if f.repeat < 1 {
		fmt.Fprintf(stderr, "chaos: --repeat %d: want at least 1\n", f.repeat)
		return exitUsage
	}
	if !f.seedSet {
		f.seed = time.Now().UnixNano() % 1_000_000
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	bin := f.bin
	if flavor == cluster.Etcd {
		bin = f.etcdBin
		if bin == "" {
			dir, err := os.MkdirTemp("", "meshkv-chaos-etcd-bin-")
			if err != nil {
				fmt.Fprintf(stderr, "chaos: %v\n", err)
				return exitError
			}
			defer os.RemoveAll(dir)
			if bin, err = buildEtcd(ctx, dir, stderr); err != nil {
				fmt.Fprintf(stderr, "chaos: %v (or pass --etcd-bin)\n", err)
				return exitError
			}
		}
	} else if bin == "" {
		dir, err := os.MkdirTemp("", "meshkv-chaos-bin-")
		if err != nil {
			fmt.Fprintf(stderr, "chaos: %v\n", err)
			return exitError
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "meshkv")
		fmt.Fprintf(stderr, "chaos: building meshkv\n")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/meshkv/meshkv/cmd/meshkv")
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(stderr, "chaos: building meshkv: %v (or pass --bin)\n", err)
			return exitError
		}
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return exitError
	}

	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts := scenario.Options{
		Binary:          bin,
		Flavor:          flavor,
		Net:             mode,
		Starve:          f.starve,
		StarveMethod:    starveMethod,
		OutDir:          f.out,
		KeepAll:         f.keep,
		Hold:            f.hold,
		CheckTimeout:    f.checkTimeout,
		MaxUnavailable:  f.maxUnavailable,
		LogLevel:        f.nodeLog,
		Heartbeat:       f.heartbeat,
		ElectionTimeout: f.election,
		Logger:          logger,
	}
	details := stdout
	if f.jsonOut {
		details = stderr
	}
	if pos[0] == "selftest" {
		return selftest(ctx, opts, f.seed, details, stderr)
	}
	if mode == cluster.Netns {
		if err := cluster.NetnsAvailable(); err != nil {
			fmt.Fprintf(stderr, "chaos: netns mode unavailable, every run is skipped: %v\n", err)
		}
	}
	var reps []*scenario.Report
	total := len(scs) * f.repeat
	k := 0
	for _, sc := range scs {
		for range f.repeat {
			if ctx.Err() != nil {
				break
			}
			opts.Seed = f.seed + int64(k)
			k++
			fmt.Fprintf(stderr, "chaos: [%d/%d] %s [%v/%v] (seed %d): %s\n", k, total, sc.Name, flavor, mode, opts.Seed, sc.Summary)
			rep := scenario.Run(ctx, sc, opts)
			reps = append(reps, rep)
			scenario.WriteDetails(details, rep)
		}
	}
	fmt.Fprintln(details)
	scenario.WriteTable(details, reps)
	if f.repeat > 1 || f.markdown {
		fmt.Fprintln(details)
		scenario.WriteMarkdown(details, reps)
	}
	var skipped []string
	for _, r := range reps {
		if r.Skipped != "" {
			skipped = append(skipped, fmt.Sprintf("%s (%s)", r.Scenario, r.Skipped))
		}
	}
	if len(skipped) > 0 {
		fmt.Fprintf(stderr, "chaos: SKIPPED %d of %d runs: %s\n", len(skipped), len(reps), strings.Join(skipped, "; "))
	}
	if f.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reps); err != nil {
			fmt.Fprintf(stderr, "chaos: %v\n", err)
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "chaos: interrupted")
	}
	return exitCode(reps, ctx.Err() != nil)
}

// selftest runs the harness's self-test: a run with stale (serializable)
// reads that the checkers must flag.
func selftest(ctx context.Context, opts scenario.Options, seed int64, out, stderr io.Writer) int {
	opts.Seed = seed
	fmt.Fprintf(stderr, "chaos: selftest (seed %d): minority-partition with serializable reads; the checkers must report stale reads\n", seed)
	caught, rep := scenario.SelfTest(ctx, opts)
	scenario.WriteDetails(out, rep)
	if caught {
		fmt.Fprintln(out, "selftest passed: the stale reads were caught")
		return exitOK
	}
	if rep.Error != "" {
		fmt.Fprintln(out, "selftest could not run:", rep.Error)
		return exitError
	}
	fmt.Fprintln(out, "selftest FAILED: stale reads went unnoticed")
	return exitViolation
}

func exitCode(reps []*scenario.Report, interrupted bool) int {
	code := exitOK
	for _, r := range reps {
		switch {
		case r.Violations() > 0:
			return exitViolation
		case r.Error != "":
			code = exitError
		case r.Inconclusive() > 0 && code == exitOK:
			code = exitInconclusive
		}
	}
	if interrupted && code == exitOK {
		code = exitError
	}
	return code
}

func selectScenarios(names []string) ([]scenario.Scenario, error) {
	if len(names) == 0 {
		return nil, errors.New("run needs scenario names, all or short (see chaos list)")
	}
	var out []scenario.Scenario
	for _, n := range names {
		switch n {
		case "all":
			out = append(out, scenario.All()...)
		case "short":
			out = append(out, scenario.ShortSuite()...)
		case "short-netns":
			out = append(out, scenario.ShortNetnsSuite()...)
		case "kernel":
			out = append(out, scenario.KernelSuite()...)
		case "literature":
			out = append(out, scenario.LiteratureSuite()...)
		default:
			sc, ok := scenario.Find(n)
			if !ok {
				return nil, fmt.Errorf("unknown scenario %q (see chaos list)", n)
			}
			out = append(out, sc)
		}
	}
	return out, nil
}

func list(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tNODES\tSHORT\tETCD\tTARGET\tWHAT IT DOES")
	for _, s := range scenario.All() {
		var short []string
		if s.Short {
			short = append(short, "proxy")
		}
		if s.ShortNetns {
			short = append(short, "netns")
		}
		etcd := "yes"
		if s.MeshkvOnly != "" {
			etcd = "no"
		}
		target := ""
		if s.Target != nil {
			target = s.Target.String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", s.Name, s.Nodes, strings.Join(short, ","), etcd, target, strings.TrimSpace(s.Summary))
	}
	_ = tw.Flush()
}

// table prints the markdown table of reports saved with --json, runs of the
// same scenario together (so that meshkv's and etcd's runs of a scenario
// sit side by side).
func table(files []string, summary bool, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprintf(stderr, "chaos: table needs report files (written with --json)\n")
		return exitUsage
	}
	var reps []*scenario.Report
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintf(stderr, "chaos: %v\n", err)
			return exitError
		}
		var rs []*scenario.Report
		if err := json.Unmarshal(b, &rs); err != nil {
			fmt.Fprintf(stderr, "chaos: %s: %v\n", name, err)
			return exitError
		}
		for _, r := range rs {
			r.SummarizeGaps()
		}
		reps = append(reps, rs...)
	}
	byScenario := map[string][]*scenario.Report{}
	var order []string
	for _, r := range reps {
		if _, seen := byScenario[r.Scenario]; !seen {
			order = append(order, r.Scenario)
		}
		byScenario[r.Scenario] = append(byScenario[r.Scenario], r)
	}
	var sorted []*scenario.Report
	for _, sc := range order {
		for _, g := range scenario.Groups(byScenario[sc]) {
			sorted = append(sorted, g...)
		}
	}
	if summary {
		scenario.WriteMarkdownSummary(stdout, sorted)
	} else {
		scenario.WriteMarkdown(stdout, sorted)
	}
	return exitOK
}
