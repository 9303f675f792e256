package scenario

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshkv/meshkv/chaos/check"
)

// safetyChecks are the checks the markdown table shows, by column.
var safetyChecks = []struct{ check, column string }{
	{"linearizable", "lin"},
	{"revisions", "rev"},
	{"lock-safety", "locks"},
	{"watch", "watch"},
	{"no-lost-writes", "durable"},
	{"consistent", "hash"},
}

// WriteMarkdown prints the reports as one markdown table, a row per run
// (every member's longest write gap, the median over faults of the worst
// member gap, the target and the safety verdicts), and after the runs of
// each scenario (same flavor, network and starvation) that ran more than
// once a summary row: each member's worst run, the median of the run
// medians, how many runs met the target, how many were safe.
func WriteMarkdown(w io.Writer, reps []*Report) {
	members := memberColumns(reps)
	head := []string{"scenario", "flavor", "net", "run", "seed"}
	head = append(head, members...)
	head = append(head, "longest", "median", "target")
	for _, c := range safetyChecks {
		head = append(head, c.column)
	}
	head = append(head, "result")
	row := func(cells []string) { fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | ")) }
	row(head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = "---"
	}
	row(sep)

	starved := false
	for i := 0; i < len(reps); {
		j := i + 1
		for j < len(reps) && sameGroup(reps[i], reps[j]) {
			j++
		}
		group := reps[i:j]
		for k, r := range group {
			row(runRow(r, k+1, members))
			starved = starved || r.Starved != ""
		}
		if len(group) > 1 {
			row(summaryRow(group, members, true))
		}
		i = j
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Gaps in seconds: a member's longest stretch without a successful write by the client pinned to it, "+
		"over each fault from injection until the cluster was healthy again, leaving out the time the member was cut off "+
		"from every majority (\"cut off\": the whole time). longest: the longest member gap of the run; median: over the "+
		"faults of a run, the worst member gap. ET: election timeout.")
	if starved {
		fmt.Fprintln(w, "*: the member whose CPU was saturated during the faults; longest, median and target leave it out.")
	}
}

// WriteMarkdownSummary prints one markdown row per group of runs (same
// scenario, flavor, network and starvation; see WriteMarkdown's summary
// rows), for comparing flavors side by side.
func WriteMarkdownSummary(w io.Writer, reps []*Report) {
	members := memberColumns(reps)
	head := []string{"scenario", "flavor", "net", "runs"}
	head = append(head, members...)
	head = append(head, "longest", "median", "target")
	for _, c := range safetyChecks {
		head = append(head, c.column)
	}
	head = append(head, "result")
	row := func(cells []string) { fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | ")) }
	row(head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = "---"
	}
	row(sep)
	for _, g := range Groups(reps) {
		row(summaryRow(g, members, false))
	}
}

// Groups splits reports into runs of the same scenario, flavor, network and
// starvation, in order of first appearance, keeping each group's order.
func Groups(reps []*Report) [][]*Report {
	var out [][]*Report
	for _, r := range reps {
		i := slices.IndexFunc(out, func(g []*Report) bool { return sameGroup(g[0], r) })
		if i < 0 {
			out = append(out, []*Report{r})
			continue
		}
		out[i] = append(out[i], r)
	}
	return out
}

func sameGroup(a, b *Report) bool {
	return a.Scenario == b.Scenario && a.Flavor == b.Flavor && a.Net == b.Net && (a.Starved != "") == (b.Starved != "")
}

// memberColumns is every member name of the reports, n1 before n2 before
// n10.
func memberColumns(reps []*Report) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range reps {
		for _, g := range r.MemberGaps {
			if !seen[g.Member] {
				seen[g.Member] = true
				out = append(out, g.Member)
			}
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		na, ea := strconv.Atoi(strings.TrimPrefix(a, "n"))
		nb, eb := strconv.Atoi(strings.TrimPrefix(b, "n"))
		if ea == nil && eb == nil && na != nb {
			return na - nb
		}
		return strings.Compare(a, b)
	})
	return out
}

func runRow(r *Report, n int, members []string) []string {
	name := r.Scenario
	if r.Starved != "" {
		name += " (CPU starved)"
	}
	cells := []string{name, r.Flavor, r.Net, strconv.Itoa(n), strconv.FormatInt(r.Seed, 10)}
	if r.Skipped != "" {
		for range members {
			cells = append(cells, "")
		}
		cells = append(cells, "", "", "")
		for range safetyChecks {
			cells = append(cells, "")
		}
		return append(cells, "skipped: "+escapeCell(r.Skipped))
	}
	gaps := map[string]MemberGap{}
	for _, g := range r.MemberGaps {
		gaps[g.Member] = g
	}
	for _, m := range members {
		g, ok := gaps[m]
		switch {
		case !ok:
			cells = append(cells, "")
		case !g.Counted:
			cells = append(cells, "cut off")
		default:
			c := fmt.Sprintf("%.2f", g.Len.Seconds())
			if m == r.Starved {
				c += "*"
			}
			cells = append(cells, c)
		}
	}
	longest, median := "", ""
	if len(r.Faults) > 0 {
		longest = fmt.Sprintf("%.2f", r.LongestMemberGap.Seconds())
		median = fmt.Sprintf("%.2f", r.MedianGap.Seconds())
	}
	cells = append(cells, longest, median, targetCell(r))
	status := map[string]check.Status{}
	for _, c := range r.Checks {
		status[c.Check] = c.Status
	}
	for _, c := range safetyChecks {
		s, ok := status[c.check]
		if !ok {
			cells = append(cells, "")
			continue
		}
		cells = append(cells, statusCell(s))
	}
	verdict := r.Verdict()
	if r.Error != "" {
		verdict += ": " + escapeCell(r.Error)
	}
	return append(cells, verdict)
}

func targetCell(r *Report) string {
	if r.Target == nil || r.ElectionTimeout <= 0 || len(r.Faults) == 0 {
		return ""
	}
	ratio := float64(r.LongestMemberGap) / float64(r.ElectionTimeout)
	if r.Target.Met(r) {
		return fmt.Sprintf("met (%.1f ET)", ratio)
	}
	return fmt.Sprintf("missed (%.1f ET)", ratio)
}

func statusCell(s check.Status) string {
	switch s {
	case check.Pass:
		return "ok"
	case check.Fail:
		return "FAIL"
	case check.Inconclusive:
		return "inconcl."
	case check.Skip:
		return "skip"
	}
	return s.String()
}

// summaryRow sums up a group of runs: each member's worst run, the longest
// gap of any run (starved members left out), the median of the run
// medians, targets met, checks passed. In a table of runs (inTable) it is bold and has an empty seed
// cell; in a summary table it has neither.
func summaryRow(group []*Report, members []string, inTable bool) []string {
	bold := func(s string) string {
		if inTable && s != "" {
			return "**" + s + "**"
		}
		return s
	}
	first := group[0]
	name := first.Scenario
	if first.Starved != "" {
		name += " (CPU starved)"
	}
	var ran []*Report
	for _, r := range group {
		if r.Skipped == "" {
			ran = append(ran, r)
		}
	}
	cells := []string{bold(name), first.Flavor, first.Net}
	if inTable {
		cells = append(cells, fmt.Sprintf("**all %d**", len(group)), "")
	} else {
		cells = append(cells, strconv.Itoa(len(group)))
	}
	var longest time.Duration
	anyLongest := false
	for _, m := range members {
		var worstGap time.Duration
		counted, present := false, false
		for _, r := range ran {
			for _, g := range r.MemberGaps {
				if g.Member == m {
					present = true
					if g.Counted {
						counted = true
						worstGap = max(worstGap, g.Len)
					}
				}
			}
		}
		switch {
		case counted:
			cells = append(cells, bold(fmt.Sprintf("%.2f", worstGap.Seconds())))
		case present:
			cells = append(cells, "cut off")
		default:
			cells = append(cells, "")
		}
	}
	var medians []time.Duration
	met, withTarget := 0, 0
	for _, r := range ran {
		if len(r.Faults) > 0 {
			medians = append(medians, r.MedianGap)
			longest, anyLongest = max(longest, r.LongestMemberGap), true
		}
		if r.Target != nil && len(r.Faults) > 0 {
			withTarget++
			if r.Target.Met(r) {
				met++
			}
		}
	}
	longestCell, median := "", ""
	if anyLongest {
		longestCell = bold(fmt.Sprintf("%.2f", longest.Seconds()))
	}
	if len(medians) > 0 {
		median = bold(fmt.Sprintf("%.2f", check.Median(medians).Seconds()))
	}
	target := ""
	if withTarget > 0 {
		target = fmt.Sprintf("%d/%d met", met, withTarget)
	}
	cells = append(cells, longestCell, median, target)
	for _, c := range safetyChecks {
		pass, judged := 0, 0
		for _, r := range ran {
			for _, rc := range r.Checks {
				if rc.Check == c.check && rc.Status != check.Skip {
					judged++
					if rc.Status == check.Pass {
						pass++
					}
				}
			}
		}
		switch {
		case judged == 0:
			cells = append(cells, "")
		case pass == judged:
			cells = append(cells, "ok")
		default:
			cells = append(cells, fmt.Sprintf("%d/%d ok", pass, judged))
		}
	}
	ok := 0
	for _, r := range ran {
		if r.Verdict() == "ok" {
			ok++
		}
	}
	res := fmt.Sprintf("%d/%d ok", ok, len(ran))
	if skipped := len(group) - len(ran); skipped > 0 {
		res += fmt.Sprintf(", %d skipped", skipped)
	}
	return append(cells, res)
}

// escapeCell keeps a message from breaking the table.
func escapeCell(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
