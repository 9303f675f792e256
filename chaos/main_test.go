package main

import (
	"bytes"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

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
	for _, bad := range [][]string{nil, {"no-such-scenario"}} {
		if _, err := selectScenarios(bad); err == nil {
			t.Errorf("selectScenarios(%q): no error", bad)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"run"}, {"run", "nope"}, {"selftest", "extra"}, {"--no-such-flag"}} {
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
