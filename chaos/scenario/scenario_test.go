package scenario

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshkv/meshkv/chaos/check"
	"github.com/meshkv/meshkv/chaos/cluster"
)

func TestCatalogue(t *testing.T) {
	want := []string{
		"minority-partition", "majority-partition-with-leader", "majority-partition-without-leader",
		"non-transitive-leader-reset", "non-transitive-leader-silent",
		"non-transitive-follower-reset", "non-transitive-follower-silent",
		"one-way-leader", "leader-isolated", "flapping-link", "bridge", "kill-and-replace",
		"pause-leader", "random-mix", "moving-cut", "moving-one-way-cut", "cpu-starve",
		"quorum-loss", "constrained-election", "chained", "follower-cut-from-leader-only", "one-way-leader-to-follower",
	}
	names := map[string]bool{}
	for _, s := range All() {
		if names[s.Name] {
			t.Errorf("duplicate scenario %s", s.Name)
		}
		names[s.Name] = true
		if s.Summary == "" || s.Faults == nil || (s.Nodes != 3 && s.Nodes != 5) {
			t.Errorf("scenario %s incomplete: %+v", s.Name, s)
		}
		if s.Voters != 0 && s.Voters > s.Nodes {
			t.Errorf("scenario %s wants %d voters of %d nodes", s.Name, s.Voters, s.Nodes)
		}
	}
	for _, n := range want {
		if !names[n] {
			t.Errorf("scenario %s missing", n)
		}
		if _, ok := Find(n); !ok {
			t.Errorf("Find(%s) failed", n)
		}
	}
	if _, ok := Find("nope"); ok {
		t.Error("Find(nope) found something")
	}
	silentNonTransitive := false
	for _, s := range ShortSuite() {
		if strings.HasPrefix(s.Name, "non-transitive-") && strings.HasSuffix(s.Name, "-silent") {
			silentNonTransitive = true
		}
	}
	if !silentNonTransitive || len(ShortSuite()) > 4 {
		t.Errorf("short suite %v: want a few scenarios including a silent non-transitive cut", ShortSuite())
	}
}

func TestScenarioMetadata(t *testing.T) {
	for _, s := range LiteratureSuite() {
		if s.Nodes != 5 || s.Voters != 5 || s.Target == nil || s.Target.MaxGapET != 2 || s.MeshkvOnly != "" {
			t.Errorf("literature scenario %s: %+v", s.Name, s)
		}
	}
	for _, n := range []string{"moving-cut", "moving-one-way-cut", "one-way-leader"} {
		s, _ := Find(n)
		if s.Target == nil || s.Target.MaxGapET != 1 || s.Target.MaxMedian != 300*time.Millisecond {
			t.Errorf("%s target = %+v", n, s.Target)
		}
	}
	kr, _ := Find("kill-and-replace")
	if kr.MeshkvOnly == "" {
		t.Error("kill-and-replace does not say it needs meshkv's membership")
	}
	etcd := Options{Binary: "x", Flavor: cluster.Etcd, Net: cluster.Proxy}
	if why := SkipReason(kr, etcd); !strings.Contains(why, "not applicable to etcd") {
		t.Errorf("SkipReason(kill-and-replace, etcd) = %q", why)
	}
	if why := SkipReason(All()[0], Options{Binary: "x"}); why != "" {
		t.Errorf("SkipReason(proxy meshkv) = %q", why)
	}
	cs, _ := Find("cpu-starve")
	if why := SkipReason(cs, Options{Binary: "x", Starve: StarveLeader}); why == "" {
		t.Error("cpu-starve with --starve not skipped")
	}
	if err := (Options{Binary: "x", Starve: "all"}).Validate(); err == nil {
		t.Error("starve role \"all\" accepted")
	}
}

func TestReportVerdicts(t *testing.T) {
	r := &Report{Scenario: "x", Checks: []check.Result{{Check: "a", Status: check.Pass}, {Check: "b", Status: check.Skip}}}
	if r.Failed() || r.Verdict() != "ok" || r.checksSummary() != "1/1 (1 skipped)" {
		t.Errorf("passing report: failed=%v verdict=%s summary=%s", r.Failed(), r.Verdict(), r.checksSummary())
	}
	r.Checks = append(r.Checks, check.Result{Check: "c", Status: check.Inconclusive})
	if r.Failed() || r.Verdict() != "inconclusive" {
		t.Errorf("inconclusive report: failed=%v verdict=%s", r.Failed(), r.Verdict())
	}
	skipped := &Report{Scenario: "y", Skipped: "netns mode unavailable"}
	if skipped.Failed() || skipped.Verdict() != "skipped" {
		t.Errorf("skipped report: failed=%v verdict=%s", skipped.Failed(), skipped.Verdict())
	}
	r.Error = "cluster did not start"
	if !r.Failed() || r.Verdict() != "ERROR" {
		t.Errorf("broken report: failed=%v verdict=%s", r.Failed(), r.Verdict())
	}
	r.Checks = append(r.Checks, check.Result{Check: "d", Status: check.Fail, Violations: []string{"stale read"}})
	if !r.Failed() || r.Verdict() != "VIOLATION" || r.Violations() != 1 {
		t.Errorf("violating report: failed=%v verdict=%s", r.Failed(), r.Verdict())
	}
	r.Faults = []FaultReport{{Name: "cut a-b", Window: check.Window{End: time.Second}, LongestGap: 300 * time.Millisecond}}
	r.LongestGap = 300 * time.Millisecond
	var b bytes.Buffer
	WriteTable(&b, []*Report{r})
	out := b.String()
	for _, want := range []string{"SCENARIO", "LONGEST UNAVAILABILITY", "x ", "1/3 (1 FAILED, 1 inconclusive, 1 skipped)", "300ms", "VIOLATION"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	WriteDetails(&b, r)
	for _, want := range []string{"error: cluster did not start", "stale read", "cut a-b"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("details lack %q:\n%s", want, b.String())
		}
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	rep := Run(context.Background(), All()[0], Options{})
	if rep.Error == "" || !rep.Failed() {
		t.Errorf("Run without a binary: %+v", rep)
	}
	if err := (Options{Binary: "x", Hold: -1}).Validate(); err == nil {
		t.Error("negative hold accepted")
	}
}

// smokeBinary returns a meshkv binary for the real-cluster smoke tests, or
// skips: they start processes and take tens of seconds, so they run only
// with MESHKV_CHAOS_SMOKE=1 (or MESHKV_BIN set).
func smokeBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("MESHKV_BIN"); bin != "" {
		return bin
	}
	if os.Getenv("MESHKV_CHAOS_SMOKE") != "1" {
		t.Skip("real-cluster smoke test: set MESHKV_CHAOS_SMOKE=1 (or MESHKV_BIN) to run it")
	}
	bin := filepath.Join(t.TempDir(), "meshkv")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/meshkv/meshkv/cmd/meshkv").CombinedOutput(); err != nil {
		t.Fatalf("building meshkv: %v\n%s", err, out)
	}
	return bin
}

func smokeOptions(t *testing.T, bin string) Options {
	return Options{Binary: bin, OutDir: t.TempDir(), Hold: time.Second, Warmup: 500 * time.Millisecond, Cooldown: 500 * time.Millisecond}
}

func TestSmokePauseLeader(t *testing.T) {
	bin := smokeBinary(t)
	sc, _ := Find("pause-leader")
	rep := Run(context.Background(), sc, smokeOptions(t, bin))
	var b bytes.Buffer
	WriteDetails(&b, rep)
	t.Log("\n" + b.String())
	if rep.Failed() {
		t.Fatalf("pause-leader failed: %s", rep.Verdict())
	}
	if rep.Ops.OK == 0 || len(rep.Faults) != 1 {
		t.Errorf("ops %+v, faults %d", rep.Ops, len(rep.Faults))
	}
}

func TestSmokeSelfTestCatchesStaleReads(t *testing.T) {
	bin := smokeBinary(t)
	caught, rep := SelfTest(context.Background(), smokeOptions(t, bin))
	if !caught {
		var b bytes.Buffer
		WriteDetails(&b, rep)
		t.Fatalf("stale serializable reads were not caught:\n%s", b.String())
	}
	if len(rep.Artifacts) == 0 {
		t.Error("no artifacts saved for the failed run")
	}
	for _, a := range rep.Artifacts {
		if _, err := os.Stat(a); err != nil {
			t.Errorf("artifact %s: %v", a, err)
		}
	}
}
