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
	// Flavor and Net are the server software and the network mode.
	Flavor string `json:"flavor"`
	Net    string `json:"net"`
	// Heartbeat and ElectionTimeout are the members' raft timing.
	Heartbeat       time.Duration `json:"heartbeat"`
	ElectionTimeout time.Duration `json:"election_timeout"`
	// Starved is the member whose CPU was saturated during the faults.
	Starved string `json:"starved,omitempty"`
	// Skipped says why the run did not happen (not applicable to the
	// flavor, netns mode unavailable, ...); a skipped run has no checks.
	Skipped string `json:"skipped,omitempty"`
	// Target is the scenario's availability target, if it has one.
	Target *Target `json:"target,omitempty"`
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
	// MemberGaps is, per member, its pinned client's longest stretch
	// without a successful write over every fault's span (see MemberGap),
	// and LongestMemberGap the longest of them but the starved member's.
	MemberGaps       []MemberGap   `json:"member_gaps,omitempty"`
	LongestMemberGap time.Duration `json:"longest_member_gap"`
	// MedianGap is the median over faults of each fault's worst member gap
	// (the starved member left out).
	MedianGap time.Duration `json:"median_gap"`
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
	case r.Skipped != "":
		return "skipped"
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
	fmt.Fprintln(tw, "SCENARIO\tOPS OK/FAILED/INDET\tCHECKS PASSED\tLONGEST UNAVAILABILITY\tLONGEST GAP PER MEMBER\tMEDIAN\tRECOVERY\tTIME\tRESULT")
	for _, r := range reps {
		name := r.Scenario
		if r.Flavor != "" && r.Net != "" && (r.Flavor != "meshkv" || r.Net != "proxy") {
			name += fmt.Sprintf(" [%s/%s]", r.Flavor, r.Net)
		}
		if r.Skipped != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\tskipped: %s\n", name, r.Skipped)
			continue
		}
		gap, median := "-", "-"
		if len(r.Faults) > 0 {
			gap = fmt.Sprintf("%v (run %v)", r.LongestGap.Round(10*time.Millisecond), r.OverallGap.Round(10*time.Millisecond))
			median = fmtGap(r.MedianGap)
		}
		fmt.Fprintf(tw, "%s\t%d/%d/%d\t%s\t%s\t%s\t%s\t%v\t%v\t%s\n", name, r.Ops.OK, r.Ops.Failed, r.Ops.Indeterminate,
			r.checksSummary(), gap, memberSummary(r), median, r.Recovery.Round(10*time.Millisecond), r.Duration.Round(100*time.Millisecond), r.Verdict())
	}
	_ = tw.Flush()
}

// memberSummary is "n1 0.12s n2 1.4s* n3 -": every member's longest gap
// (- when it could never serve writes), the starved member marked *.
func memberSummary(r *Report) string {
	if len(r.MemberGaps) == 0 {
		return "-"
	}
	parts := make([]string, len(r.MemberGaps))
	for i, g := range r.MemberGaps {
		v := "-"
		if g.Counted {
			v = fmtGap(g.Len)
		}
		if g.Member == r.Starved {
			v += "*"
		}
		parts[i] = g.Member + " " + v
	}
	return strings.Join(parts, " ")
}

// fmtGap rounds a gap for tables: 10 ms steps, seconds with two decimals.
func fmtGap(d time.Duration) string {
	return fmt.Sprintf("%.2fs", d.Round(10*time.Millisecond).Seconds())
}

// WriteDetails prints, for one report, every check, every fault and, when
// the run failed, the timeline and where its artifacts are.
func WriteDetails(w io.Writer, r *Report) {
	fmt.Fprintf(w, "== %s [%s/%s] (seed %d): %s in %v\n", r.Scenario, r.Flavor, r.Net, r.Seed, r.Verdict(), r.Duration.Round(100*time.Millisecond))
	if r.Skipped != "" {
		fmt.Fprintf(w, "  skipped: %s\n", r.Skipped)
		return
	}
	fmt.Fprintf(w, "  raft: heartbeat %v, election timeout %v", r.Heartbeat, r.ElectionTimeout)
	if r.Starved != "" {
		fmt.Fprintf(w, "; CPU of %s starved during the faults", r.Starved)
	}
	fmt.Fprintln(w)
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
		switch {
		case f.RecoveryErr != "":
			rec = "NOT RECOVERED: " + f.RecoveryErr
		case f.Settled:
			rec = "not awaited"
		}
		fmt.Fprintf(w, "  fault %-55s %6.2fs  no write for %v (from %.2fs)  recovery %s\n", f.Name,
			(f.Window.End - f.Window.Start).Seconds(), f.LongestGap.Round(10*time.Millisecond), f.Gap.Start.Seconds(), rec)
		var ms []string
		for _, g := range f.MemberGaps {
			if g.Counted {
				ms = append(ms, fmt.Sprintf("%s %s (%.2fs-%.2fs)", g.Member, fmtGap(g.Len), g.Gap.Start.Seconds(), g.Gap.End.Seconds()))
			} else {
				ms = append(ms, g.Member+" cut off")
			}
		}
		if len(ms) > 0 {
			fmt.Fprintf(w, "        per member, until %.2fs: %s\n", f.Until.Seconds(), strings.Join(ms, ", "))
		}
	}
	if len(r.Faults) > 0 {
		fmt.Fprintf(w, "  longest gap per member: %s; median over faults of the worst member gap: %s", memberSummary(r), fmtGap(r.MedianGap))
		if r.Target != nil {
			met := "MISSED"
			if r.Target.Met(r) {
				met = "met"
			}
			fmt.Fprintf(w, "; target (%v): %s", r.Target, met)
		}
		fmt.Fprintln(w)
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
