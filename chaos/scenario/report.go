package scenario

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshkv/meshkv/chaos/check"
	"github.com/meshkv/meshkv/chaos/workload"
)

// OpCounts counts key-value operations by outcome.
type OpCounts struct {
	OK            int `json:"ok"`
	Failed        int `json:"failed"`
	Indeterminate int `json:"indeterminate"`
}

// Report is the outcome of one scenario run.
type Report struct {
	Scenario string `json:"scenario"`
	Seed     int64  `json:"seed"`
	// Started is the wall time of the run clock's zero: every offset in the
	// report (timeline, fault windows, gaps, history) counts from it.
	Started  time.Time          `json:"started"`
	Duration time.Duration      `json:"duration"`
	Ops      OpCounts           `json:"ops"`
	Locks    workload.LockStats `json:"locks"`
	Checks   []check.Result     `json:"checks"`
	Faults   []FaultReport      `json:"faults"`
	// LongestGap is the longest stretch without a successful write inside
	// any fault, and WorstFault the fault it was in.
	LongestGap time.Duration `json:"longest_gap"`
	WorstFault string        `json:"worst_fault,omitempty"`
	// OverallGap is the longest stretch without a successful write over
	// the whole run, recoveries included.
	OverallGap time.Duration `json:"overall_gap"`
	// Recovery is the slowest recovery after a heal.
	Recovery time.Duration `json:"recovery"`
	// Error is a problem of the harness or a cluster that did not come up
	// or back; it fails the run.
	Error     string   `json:"error,omitempty"`
	Dir       string   `json:"dir,omitempty"`
	Artifacts []string `json:"artifacts,omitempty"`
	Timeline  []string `json:"timeline,omitempty"`

	lin *check.Linearization
}

// Violations counts failed checks.
func (r *Report) Violations() int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == check.Fail {
			n++
		}
	}
	return n
}

// Inconclusive counts checks that could not decide.
func (r *Report) Inconclusive() int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == check.Inconclusive {
			n++
		}
	}
	return n
}

// Failed reports whether the run found a violation or could not be carried
// out.
func (r *Report) Failed() bool { return r.Violations() > 0 || r.Error != "" }

// Verdict is the run's one-word outcome.
func (r *Report) Verdict() string {
	switch {
	case r.Violations() > 0:
		return "VIOLATION"
	case r.Error != "":
		return "ERROR"
	case r.Inconclusive() > 0:
		return "inconclusive"
	}
	return "ok"
}

// checksSummary is "passed/applicable" plus how many failed, were
// inconclusive or were skipped.
func (r *Report) checksSummary() string {
	var pass, fail, inc, skip int
	for _, c := range r.Checks {
		switch c.Status {
		case check.Pass:
			pass++
		case check.Fail:
			fail++
		case check.Inconclusive:
			inc++
		case check.Skip:
			skip++
		}
	}
	s := fmt.Sprintf("%d/%d", pass, pass+fail+inc)
	var notes []string
	if fail > 0 {
		notes = append(notes, fmt.Sprintf("%d FAILED", fail))
	}
	if inc > 0 {
		notes = append(notes, fmt.Sprintf("%d inconclusive", inc))
	}
	if skip > 0 {
		notes = append(notes, fmt.Sprintf("%d skipped", skip))
	}
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, ", ") + ")"
	}
	return s
}

// WriteTable prints one row per report.
func WriteTable(w io.Writer, reps []*Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tOPS OK/FAILED/INDET\tCHECKS PASSED\tLONGEST UNAVAILABILITY\tRECOVERY\tTIME\tRESULT")
	for _, r := range reps {
		gap := "-"
		if len(r.Faults) > 0 {
			gap = fmt.Sprintf("%v (run %v)", r.LongestGap.Round(10*time.Millisecond), r.OverallGap.Round(10*time.Millisecond))
		}
		fmt.Fprintf(tw, "%s\t%d/%d/%d\t%s\t%s\t%v\t%v\t%s\n", r.Scenario, r.Ops.OK, r.Ops.Failed, r.Ops.Indeterminate,
			r.checksSummary(), gap, r.Recovery.Round(10*time.Millisecond), r.Duration.Round(100*time.Millisecond), r.Verdict())
	}
	_ = tw.Flush()
}

// WriteDetails prints, for one report, every check, every fault and, when
// the run failed, the timeline and where its artifacts are.
func WriteDetails(w io.Writer, r *Report) {
	fmt.Fprintf(w, "== %s (seed %d): %s in %v\n", r.Scenario, r.Seed, r.Verdict(), r.Duration.Round(100*time.Millisecond))
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", r.Error)
	}
	fmt.Fprintf(w, "  ops: %d ok, %d failed, %d indeterminate; locks: %d acquired of %d attempts, %d sessions\n",
		r.Ops.OK, r.Ops.Failed, r.Ops.Indeterminate, r.Locks.Acquired, r.Locks.Attempts, r.Locks.Sessions)
	for _, c := range r.Checks {
		fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(c.String(), "\n", "\n  "))
	}
	for _, f := range r.Faults {
		rec := f.Recovery.Round(time.Millisecond).String()
		if f.RecoveryErr != "" {
			rec = "NOT RECOVERED: " + f.RecoveryErr
		}
		fmt.Fprintf(w, "  fault %-55s %6.2fs  no write for %v (from %.2fs)  recovery %s\n", f.Name,
			(f.Window.End - f.Window.Start).Seconds(), f.LongestGap.Round(10*time.Millisecond), f.Gap.Start.Seconds(), rec)
	}
	if r.Failed() {
		for _, l := range r.Timeline {
			fmt.Fprintf(w, "  | %s\n", l)
		}
	}
	if r.Dir != "" {
		fmt.Fprintf(w, "  artifacts and node logs: %s\n", r.Dir)
	}
}
