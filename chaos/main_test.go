package main

import (
	"bytes"
	"encoding/json"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshkv/meshkv/chaos/check"
	"github.com/meshkv/meshkv/chaos/scenario"
)

func TestParseFlagsAnywhere(t *testing.T) {
	var f flags
	fs := newFlagSet(&f, &bytes.Buffer{})
	pos, err := parse(fs, []string{"--seed", "7", "run", "bridge", "--keep", "pause-leader", "--hold=2s"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pos, " "); got != "run bridge pause-leader" {
		t.Errorf("positional = %q", got)
	}
	if !f.seedSet || f.seed != 7 || !f.keep || f.hold.String() != "2s" {
		t.Errorf("flags = %+v", f)
	}
	f = flags{}
	if _, err := parse(newFlagSet(&f, &bytes.Buffer{}), []string{"run", "quorum-loss", "--net", "netns", "--flavor", "etcd",
		"--etcd-bin", "/x/etcd", "--repeat", "3", "--starve", "leader", "--starve-method", "pin"}); err != nil {
		t.Fatal(err)
	}
	if f.net != "netns" || f.flavor != "etcd" || f.etcdBin != "/x/etcd" || f.repeat != 3 || f.starve != "leader" || f.starveMethod != "pin" {
		t.Errorf("flags = %+v", f)
	}
	f = flags{}
	if _, err := parse(newFlagSet(&f, &bytes.Buffer{}), []string{"run", "x"}); err != nil {
		t.Fatal(err)
	}
	if f.net != "proxy" || f.flavor != "meshkv" || f.repeat != 1 || f.starveMethod != "quota" {
		t.Errorf("defaults = %+v", f)
	}
	if _, err := parse(newFlagSet(&f, &bytes.Buffer{}), []string{"run", "--seed", "x"}); err == nil {
		t.Error("bad seed accepted")
	}
}

func TestSelectScenarios(t *testing.T) {
	got, err := selectScenarios([]string{"short", "bridge"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(scenario.ShortSuite())+1 || got[len(got)-1].Name != "bridge" {
		t.Errorf("selected %d scenarios", len(got))
	}
	if all, _ := selectScenarios([]string{"all"}); len(all) != len(scenario.All()) {
		t.Errorf("all selected %d of %d", len(all), len(scenario.All()))
	}
	for suite, want := range map[string]int{"short-netns": 2, "literature": 5, "kernel": 7} {
		got, err := selectScenarios([]string{suite})
		if err != nil || len(got) != want {
			t.Errorf("%s: %d scenarios, %v; want %d", suite, len(got), err, want)
		}
	}
	netnsShort, _ := selectScenarios([]string{"short-netns"})
	var names []string
	for _, s := range netnsShort {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "one-way-leader,moving-cut" {
		t.Errorf("short-netns = %v, want a one-way cut and the moving cut", names)
	}
	for _, bad := range [][]string{nil, {"no-such-scenario"}} {
		if _, err := selectScenarios(bad); err == nil {
			t.Errorf("selectScenarios(%q): no error", bad)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"run"}, {"run", "nope"}, {"selftest", "extra"}, {"--no-such-flag"},
		{"run", "bridge", "--flavor", "etcd"}, {"run", "bridge", "--net", "tc"}, {"run", "bridge", "--flavor", "consul", "--net", "netns"},
		{"run", "bridge", "--repeat", "0"}, {"run", "bridge", "--starve", "everyone"}, {"run", "bridge", "--starve-method", "nice"},
		{"selftest", "--flavor", "etcd", "--net", "netns"}, {"build-etcd", "extra"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != exitUsage {
			t.Errorf("run(%q) = %d, want %d (usage)", args, code, exitUsage)
		}
	}
	var out bytes.Buffer
	if code := run([]string{"list"}, &out, &bytes.Buffer{}); code != exitOK {
		t.Fatalf("list exit %d", code)
	}
	for _, s := range scenario.All() {
		if !strings.Contains(out.String(), s.Name) {
			t.Errorf("list does not show %s", s.Name)
		}
	}
}

func TestExitCode(t *testing.T) {
	pass := &scenario.Report{Checks: []check.Result{{Check: "a", Status: check.Pass}, {Check: "s", Status: check.Skip}}}
	inc := &scenario.Report{Checks: []check.Result{{Check: "a", Status: check.Inconclusive}}}
	broken := &scenario.Report{Error: "cluster did not start"}
	bad := &scenario.Report{Checks: []check.Result{{Check: "a", Status: check.Fail}}}
	tests := []struct {
		reps        []*scenario.Report
		interrupted bool
		want        int
	}{
		{[]*scenario.Report{pass, pass}, false, exitOK},
		{[]*scenario.Report{pass, inc}, false, exitInconclusive},
		{[]*scenario.Report{inc, broken}, false, exitError},
		{[]*scenario.Report{broken, bad, inc}, false, exitViolation},
		{[]*scenario.Report{pass}, true, exitError},
	}
	for i, tc := range tests {
		if got := exitCode(tc.reps, tc.interrupted); got != tc.want {
			t.Errorf("case %d: exitCode = %d, want %d", i, got, tc.want)
		}
	}
}

// TestPackageDocs fails for any package under chaos/ without a package doc
// comment.
func TestPackageDocs(t *testing.T) {
	documented := map[string]bool{}
	seen := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		seen[dir] = true
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			documented[dir] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 5 {
		t.Fatalf("found only %d packages: %v", len(seen), seen)
	}
	for dir := range seen {
		if !documented[dir] {
			t.Errorf("package in %s has no doc comment", dir)
		}
	}
}

// TestTable reads reports saved with --json back and prints them as one
// markdown table, runs of a scenario together whatever file they came from.
func TestTable(t *testing.T) {
	mk := func(sc, flavor string, seed int64, gap time.Duration) *scenario.Report {
		return &scenario.Report{Scenario: sc, Flavor: flavor, Net: "netns", Seed: seed, ElectionTimeout: time.Second,
			Faults: []scenario.FaultReport{{Name: "f", MemberCounted: true, WorstMemberGap: gap}}, MedianGap: gap,
			MemberGaps:       []scenario.MemberGap{{Member: "n1", Counted: true, Len: gap}},
			LongestMemberGap: gap, Target: &scenario.Target{MaxGapET: 2},
			Checks: []check.Result{{Check: "linearizable", Status: check.Pass}, {Check: "watch", Status: check.Fail}}}
	}
	dir := t.TempDir()
	write := func(name string, reps ...*scenario.Report) string {
		b, err := json.Marshal(reps)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("meshkv.json", mk("chained", "meshkv", 1, 8600*time.Millisecond), mk("quorum-loss", "meshkv", 2, 900*time.Millisecond))
	b := write("etcd.json", mk("chained", "etcd", 1, 3*time.Second))
	var out bytes.Buffer
	if code := run([]string{"table", a, b}, &out, &bytes.Buffer{}); code != exitOK {
		t.Fatalf("table exit %d", code)
	}
	got := out.String()
	iMeshkv := strings.Index(got, "| chained | meshkv |")
	iEtcd := strings.Index(got, "| chained | etcd |")
	iQuorum := strings.Index(got, "| quorum-loss | meshkv |")
	if iMeshkv < 0 || iEtcd < iMeshkv || iQuorum < iEtcd {
		t.Errorf("rows out of order (chained meshkv, chained etcd, quorum-loss):\n%s", got)
	}
	for _, want := range []string{"| 8.60 |", "missed (8.6 ET)", "met (0.9 ET)", "| ok | ", "| FAIL |"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	out.Reset()
	if code := run([]string{"table", "--summary", a, b}, &out, &bytes.Buffer{}); code != exitOK || strings.Count(out.String(), "\n") != 5 {
		t.Errorf("summary (exit %d): want a header, a separator and 3 rows:\n%s", code, out.String())
	}
	if code := run([]string{"table"}, &out, &bytes.Buffer{}); code != exitUsage {
		t.Errorf("table without files: exit %d", code)
	}
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte("{"), 0o644)
	if code := run([]string{"table", bad}, &out, &bytes.Buffer{}); code != exitError {
		t.Errorf("table of a bad file: exit %d", code)
	}
}
