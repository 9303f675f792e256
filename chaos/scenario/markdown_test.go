package scenario

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/meshkv/meshkv/chaos/check"
)

func mdReport(seed int64, gaps map[string]time.Duration, median time.Duration, fail bool) *Report {
	r := &Report{Scenario: "moving-cut", Seed: seed, Flavor: "meshkv", Net: "netns", ElectionTimeout: time.Second,
		Target: &Target{MaxGapET: 1, MaxMedian: 300 * ms}, MedianGap: median, Faults: []FaultReport{{Name: "f"}}}
	for _, m := range []string{"n1", "n2", "n3"} {
		g, ok := gaps[m]
		r.MemberGaps = append(r.MemberGaps, MemberGap{Member: m, Counted: ok, Len: g})
		if ok {
			r.LongestMemberGap = max(r.LongestMemberGap, g)
		}
	}
	st := check.Pass
	if fail {
		st = check.Fail
	}
	for _, c := range []string{"linearizable", "revisions", "lock-safety", "watch", "no-lost-writes", "consistent"} {
		r.Checks = append(r.Checks, check.Result{Check: c, Status: check.Pass})
	}
	r.Checks[0].Status = st
	return r
}

func TestWriteMarkdown(t *testing.T) {
	reps := []*Report{
		mdReport(1, map[string]time.Duration{"n1": 120 * ms, "n2": 900 * ms, "n3": 50 * ms}, 200*ms, false),
		mdReport(2, map[string]time.Duration{"n1": 1500 * ms, "n3": 40 * ms}, 400*ms, true),
		{Scenario: "moving-cut", Seed: 3, Flavor: "meshkv", Net: "netns", Skipped: "netns mode unavailable: not root"},
		{Scenario: "kill-and-replace", Seed: 4, Flavor: "etcd", Net: "netns", Skipped: "not applicable | to etcd"},
	}
	reps[1].Starved = "n1"
	var b bytes.Buffer
	WriteMarkdown(&b, reps)
	out := b.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	head := lines[0]
	for _, col := range []string{"| scenario |", "| n1 | n2 | n3 |", "| longest | median | target |", "| lin | rev | locks | watch | durable | hash |", "| result |"} {
		if !strings.Contains(head, col) {
			t.Errorf("header lacks %q: %s", col, head)
		}
	}
	want := []string{
		"| moving-cut | meshkv | netns | 1 | 1 | 0.12 | 0.90 | 0.05 | 0.90 | 0.20 | met (0.9 ET) | ok | ok | ok | ok | ok | ok | ok |",
		"| moving-cut (CPU starved) | meshkv | netns | 1 | 2 | 1.50* | cut off | 0.04 | 1.50 | 0.40 | missed (1.5 ET) | FAIL | ok |",
		"| moving-cut | meshkv | netns | 1 | 3 |",
		"skipped: netns mode unavailable: not root |",
		"skipped: not applicable \\| to etcd |",
		"*: the member whose CPU was saturated",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("markdown lacks %q:\n%s", w, out)
		}
	}
	// Every row has as many cells as the header.
	cells := strings.Count(head, "|")
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "|") && strings.Count(strings.ReplaceAll(l, "\\|", ""), "|") != cells {
			t.Errorf("row with %d separators, header %d: %s", strings.Count(l, "|"), cells, l)
		}
	}

	// Runs of one scenario in a row get a summary.
	b.Reset()
	reps[1].Starved = ""
	WriteMarkdown(&b, reps[:3])
	out = b.String()
	for _, w := range []string{
		"| **moving-cut** | meshkv | netns | **all 3** |  | **1.50** | **0.90** | **0.05** | **1.50** | **0.30** | 1/2 met | 1/2 ok | ok | ok | ok | ok | ok | 1/2 ok, 1 skipped |",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("markdown lacks the summary %q:\n%s", w, out)
		}
	}
	b.Reset()
	WriteMarkdownSummary(&b, reps[:3])
	out = b.String()
	if want := "| moving-cut | meshkv | netns | 3 | 1.50 | 0.90 | 0.05 | 1.50 | 0.30 | 1/2 met | 1/2 ok | ok | ok | ok | ok | ok | 1/2 ok, 1 skipped |"; !strings.Contains(out, want) {
		t.Errorf("summary lacks %q:\n%s", want, out)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || strings.Count(lines[0], "|") != strings.Count(lines[2], "|") {
		t.Errorf("summary: want a header, a separator and one row of the header's width:\n%s", out)
	}
}

func TestTargetMet(t *testing.T) {
	tg := Target{MaxGapET: 2}
	r := &Report{ElectionTimeout: time.Second, LongestMemberGap: 2 * time.Second, Faults: []FaultReport{{}}}
	if !tg.Met(r) {
		t.Error("2s with a 2 ET target at 1s ET not met")
	}
	r.LongestMemberGap = 2001 * ms
	if tg.Met(r) {
		t.Error("2.001s met a 2 ET target")
	}
	tg = Target{MaxGapET: 1, MaxMedian: 300 * ms}
	r.LongestMemberGap, r.MedianGap = 500*ms, 301*ms
	if tg.Met(r) {
		t.Error("median 301ms met a 300ms target")
	}
	if tg.Met(&Report{ElectionTimeout: time.Second}) {
		t.Error("a run without faults met a target")
	}
	if !strings.Contains(tg.String(), "1 ET") || !strings.Contains(tg.String(), "300ms") {
		t.Errorf("Target.String = %q", tg.String())
	}
}
