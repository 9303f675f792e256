// Command benchcompare measures meshkv side by side with etcd 3.7.3 on this
// machine and prints a markdown report. It is what `make bench-compare` runs:
//
//	go run ./internal/bench/benchcompare [--rounds 2] [--full]
//
// It builds bin/meshkv and bin/etcd (etcd from the nested tests module),
// starts a 3-member etcd cluster (--unsafe-no-fsync, since meshkv keeps
// everything in memory) and a 3-node meshkv cluster on loopback, and runs each
// workload on both in turn, etcd then meshkv, for several rounds, with the
// same client code (package internal/bench) in this process. The report gives
// the median of the rounds (and their range) and the meshkv/etcd ratio.
//
// It then measures meshkv's put latency over a relayed line topology
// (A–B–C with peer discovery off, so A and C have no direct link; the client
// talks to A), an embedded single node driven through its in-process client
// (for reference), and each system's resident memory after loading a key
// space into fresh clusters.
//
// Every process it starts is stopped by PID when it ends, also on SIGINT or
// SIGTERM, and dies with it otherwise (PR_SET_PDEATHSIG); temporary data
// directories are removed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/meshkv/meshkv/internal/bench"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Sections of the report, selectable with --only.
const (
	sectionTable    = "table"
	sectionLine     = "line"
	sectionEmbedded = "embedded"
	sectionRSS      = "rss"
	sectionScrape   = "scrape"
)

var allSections = []string{sectionTable, sectionLine, sectionEmbedded, sectionRSS, sectionSecurity, sectionScrape}

// defaultSections run without --only; the security and scrape sections run
// when asked for.
var defaultSections = []string{sectionTable, sectionLine, sectionEmbedded, sectionRSS}

// fullRSSKeys is the key count of --full: the memory target.
const fullRSSKeys = 1_000_000

type options struct {
	root      string // the main module's directory
	bin       string // where the binaries go
	rounds    int
	duration  time.Duration
	warmup    time.Duration
	rssKeys   int
	valueSize int
	build     bool
	sections  map[string]bool
	jsonOut   string
	tmp       string
	keep      bool
}

func (o *options) where() where { return where{parent: o.tmp, keep: o.keep} }

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("benchcompare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: scripts/bench-compare.sh [flags]  (or go run ./internal/bench/benchcompare [flags])\n\n"+
			"Builds meshkv and etcd 3.7.3, runs the same workloads on a 3-member cluster of each\n"+
			"(interleaved, several rounds) and prints a markdown comparison on stdout.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.IntVar(&o.rounds, "rounds", 2, "rounds of each workload on each system (interleaved etcd, meshkv, etcd, ...)")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "measured window of each run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warmup before each run's window")
	fs.IntVar(&o.rssKeys, "rss-keys", 200_000, "keys loaded into fresh clusters before reading their RSS")
	full := fs.Bool("full", false, fmt.Sprintf("the full memory run: --rss-keys %d", fullRSSKeys))
	fs.IntVar(&o.valueSize, "value-size", bench.DefaultValueSize, "value size in bytes of every workload")
	noBuild := fs.Bool("no-build", false, "use the binaries in --bin as they are")
	fs.StringVar(&o.bin, "bin", "", "`dir`ectory of the meshkv and etcd binaries (default: bin in the module root)")
	only := fs.String("only", strings.Join(defaultSections, ","), "comma-separated `sections` to run: "+strings.Join(allSections, ", ")+
		" (security: client TLS and auth, over TLS with its own clusters)")
	fs.StringVar(&o.jsonOut, "json", "", "also write every run's raw result to this `file` as JSON")
	fs.StringVar(&o.tmp, "tmp", "", "`dir`ectory for the servers' temporary directories (default: the system's)")
	fs.BoolVar(&o.keep, "keep", false, "keep the servers' directories (logs, etcd data) and print where they are")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *full {
		o.rssKeys = fullRSSKeys
	}
	o.build = !*noBuild
	switch {
	case o.rounds < 1:
		return nil, fmt.Errorf("--rounds %d: want at least 1", o.rounds)
	case o.duration <= 0 || o.warmup < 0:
		return nil, errors.New("--duration must be positive and --warmup not negative")
	case o.rssKeys < 1 || o.valueSize < 1:
		return nil, errors.New("--rss-keys and --value-size must be positive")
	}
	o.sections = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allSections, s) {
			return nil, fmt.Errorf("--only: unknown section %q (want %s)", s, strings.Join(allSections, ", "))
		}
		o.sections[s] = true
	}
	if len(o.sections) == 0 {
		return nil, errors.New("--only names no section")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "benchcompare: %v\n", err)
		return 2
	}
	if o.root, err = moduleRoot(); err != nil {
		fmt.Fprintf(stderr, "benchcompare: %v\n", err)
		return 2
	}
	if o.bin == "" {
		o.bin = filepath.Join(o.root, "bin")
	}
	c := &comparer{o: o, log: stderr}
	report, err := c.compare(ctx)
	if o.jsonOut != "" {
		if jerr := c.writeJSON(o.jsonOut); jerr != nil {
			fmt.Fprintf(stderr, "benchcompare: %v\n", jerr)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "benchcompare: %v\n", err)
		if report != "" {
			fmt.Fprintf(stderr, "partial report:\n%s", report)
		}
		return 1
	}
	fmt.Fprint(stdout, report)
	return 0
}

// moduleRoot finds the directory of the main module's go.mod from the
// working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/meshkv/meshkv\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the meshkv repository (no go.mod of github.com/meshkv/meshkv above the working directory)")
		}
		dir = parent
	}
}

// goTool returns the go command that runs this program, or the one on PATH.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// build builds bin/meshkv and bin/etcd (from the nested tests module, which
// requires etcd's server).
func (c *comparer) build(ctx context.Context) error {
	steps := []struct{ dir, pkg, out string }{
		{c.o.root, "./cmd/meshkv", filepath.Join(c.o.bin, "meshkv")},
		{filepath.Join(c.o.root, "tests"), "go.etcd.io/etcd/server/v3", filepath.Join(c.o.bin, "etcd")},
	}
	for _, s := range steps {
		fmt.Fprintf(c.log, "building %s\n", s.out)
		cmd := exec.CommandContext(ctx, goTool(), "build", "-o", s.out, s.pkg)
		cmd.Dir = s.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", s.pkg, err, out)
		}
	}
	return nil
}
