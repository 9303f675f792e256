// Command chaos runs meshkv's fault-injection scenarios against a real
// multi-process cluster on loopback and reports whether meshkv stayed correct
// (linearizable key-value operations, safe locks, complete watches, no lost
// acknowledged writes) and how available it stayed.
//
// Usage:
//
//	go run ./chaos list
//	go run ./chaos run <scenario>... | all | short [flags]
//	go run ./chaos selftest [flags]
//
// Each run prints a table (scenario, operations ok/failed/indeterminate,
// checks passed, longest unavailability during a fault, slowest recovery) and
// exits 0 when every applicable check passed, 1 on any violation, 2 when the
// harness or the cluster failed (no violation found), 3 when a check was
// inconclusive. See chaos/README.md.
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
	fs.DurationVar(&f.heartbeat, "heartbeat", 0, "nodes' raft heartbeat (default 50ms)")
	fs.DurationVar(&f.election, "election-timeout", 0, "nodes' raft election timeout (default 500ms)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage:\n  chaos list\n  chaos run <scenario>... | all | short [flags]\n  chaos selftest [flags]   (stale reads on purpose: the checkers must catch them)\n\nFlags:\n")
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
		fmt.Fprintf(stderr, "chaos: unknown command %q (want list, run or selftest)\n", pos[0])
		return exitUsage
	}
	if !f.seedSet {
		f.seed = time.Now().UnixNano() % 1_000_000
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	bin := f.bin
	if bin == "" {
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
	var reps []*scenario.Report
	for i, sc := range scs {
		if ctx.Err() != nil {
			break
		}
		opts.Seed = f.seed + int64(i)
		fmt.Fprintf(stderr, "chaos: [%d/%d] %s (seed %d): %s\n", i+1, len(scs), sc.Name, opts.Seed, sc.Summary)
		rep := scenario.Run(ctx, sc, opts)
		reps = append(reps, rep)
		scenario.WriteDetails(details, rep)
	}
	fmt.Fprintln(details)
	scenario.WriteTable(details, reps)
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
	fmt.Fprintln(tw, "SCENARIO\tNODES\tSHORT\tWHAT IT DOES")
	for _, s := range scenario.All() {
		short := ""
		if s.Short {
			short = "yes"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", s.Name, s.Nodes, short, strings.TrimSpace(s.Summary))
	}
	_ = tw.Flush()
}
