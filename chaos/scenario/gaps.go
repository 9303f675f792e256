package scenario

import (
	"time"

	"github.com/meshkv/meshkv/chaos/check"
	"github.com/meshkv/meshkv/chaos/cluster"
	"github.com/meshkv/meshkv/chaos/workload"
)

// Per-member availability accounting.
//
// A member's clients (the key-value worker pinned to it) can only be
// expected to write while the member could serve writes at all: while it
// runs (not paused, not dead) and reaches, over links cut in neither
// direction, a group of running members that holds a majority of the
// voters. Relaying through a third member counts: that is meshkv's promise
// (etcd does not relay, which is what the comparison shows). A member cut
// off from any majority cannot write under any protocol, so that time is
// left out of its gaps; its gap resumes when it is reachable again (after
// the heal, for example), and then counts how long it takes to write again.

// MemberGap is the longest stretch without a successful write by one
// member's pinned client.
type MemberGap struct {
	Member string `json:"member"`
	// Gap is the longest stretch, and Len its length; Counted is false when
	// the member could not serve writes at any time of the span (cut off
	// or paused throughout), so there is no gap to report.
	Gap     check.Gap     `json:"gap"`
	Len     time.Duration `json:"len"`
	Counted bool          `json:"counted"`
	// Fault is the fault the gap was in (in Report.MemberGaps).
	Fault string `json:"fault,omitempty"`
}

// span is a topology in force over [start, end) of the run clock.
type span struct {
	start, end time.Duration
	topo       cluster.Topology
}

// spans turns topologies (wall-clock stamped) into spans of the run clock
// that starts at t0; the last runs until end.
func spans(topos []cluster.Topology, t0 time.Time, end time.Duration) []span {
	var out []span
	for i, t := range topos {
		s := max(t.At.Sub(t0), 0)
		e := end
		if i+1 < len(topos) {
			e = max(topos[i+1].At.Sub(t0), 0)
		}
		if e > s {
			out = append(out, span{start: s, end: e, topo: t})
		}
	}
	return out
}

// able returns the members of a topology that can serve writes: running
// members in a connected group (over links cut in neither direction) of at
// least majority running members.
func able(t cluster.Topology, majority int) map[string]bool {
	paused := map[string]bool{}
	for _, p := range t.Paused {
		paused[p] = true
	}
	var run []string
	for _, n := range t.Live {
		if !paused[n] {
			run = append(run, n)
		}
	}
	blocked := map[[2]string]bool{}
	for _, b := range t.Blocked {
		blocked[b] = true
	}
	linked := func(a, b string) bool { return !blocked[[2]string{a, b}] && !blocked[[2]string{b, a}] }
	group := map[string]int{}
	g := 0
	for _, n := range run {
		if _, done := group[n]; done {
			continue
		}
		group[n] = g
		queue := []string{n}
		for len(queue) > 0 {
			x := queue[0]
			queue = queue[1:]
			for _, y := range run {
				if _, done := group[y]; !done && linked(x, y) {
					group[y] = g
					queue = append(queue, y)
				}
			}
		}
		g++
	}
	size := make([]int, g)
	for _, gi := range group {
		size[gi]++
	}
	out := map[string]bool{}
	for n, gi := range group {
		if size[gi] >= majority {
			out[n] = true
		}
	}
	return out
}

// availability returns, per member, the merged windows of the run clock in
// which it could serve writes.
func availability(ss []span, majority int) map[string][]check.Window {
	out := map[string][]check.Window{}
	for _, s := range ss {
		for n := range able(s.topo, majority) {
			ws := out[n]
			if k := len(ws); k > 0 && ws[k-1].End >= s.start {
				ws[k-1].End = max(ws[k-1].End, s.end)
			} else {
				ws = append(ws, check.Window{Name: n, Start: s.start, End: s.end})
			}
			out[n] = ws
		}
	}
	return out
}

// minWindow is the shortest stretch of availability that counts: below it
// a member could not have been expected to complete a write anyway (a
// member killed at the start of a fault is available for microseconds).
const minWindow = 50 * time.Millisecond

// clip intersects windows with [from, to], dropping pieces shorter than
// minWindow.
func clip(ws []check.Window, from, to time.Duration) []check.Window {
	var out []check.Window
	for _, w := range ws {
		s, e := max(w.Start, from), min(w.End, to)
		if e-s >= minWindow {
			out = append(out, check.Window{Name: w.Name, Start: s, End: e})
		}
	}
	return out
}

// memberGaps computes, for one span of the run [from, to], every member's
// longest gap. members lists the members in report order; successes maps a
// member to its pinned client's successful writes.
func memberGaps(members []string, avail map[string][]check.Window, successes map[string][]time.Duration, from, to time.Duration) []MemberGap {
	out := make([]MemberGap, 0, len(members))
	for _, m := range members {
		ws := clip(avail[m], from, to)
		mg := MemberGap{Member: m, Counted: len(ws) > 0}
		if mg.Counted {
			mg.Gap = check.LongestGapIn(successes[m], ws)
			mg.Len = mg.Gap.Len()
		}
		out = append(out, mg)
	}
	return out
}

// worst is the longest counted gap of any member but skip, and whether
// any such member was counted.
func worst(gs []MemberGap, skip string) (time.Duration, bool) {
	var w time.Duration
	any := false
	for _, g := range gs {
		if g.Counted && g.Member != skip {
			any = true
			w = max(w, g.Len)
		}
	}
	return w, any
}

// mergeLongest keeps, per member, the longest of the per-fault gaps, noting
// the fault it was in.
func mergeLongest(members []string, faults []FaultReport) []MemberGap {
	best := map[string]MemberGap{}
	for _, f := range faults {
		for _, g := range f.MemberGaps {
			b, seen := best[g.Member]
			if !g.Counted || (seen && b.Counted && b.Len >= g.Len) {
				if !seen {
					best[g.Member] = MemberGap{Member: g.Member}
				}
				continue
			}
			g.Fault = f.Name
			best[g.Member] = g
		}
	}
	out := make([]MemberGap, 0, len(members))
	for _, m := range members {
		if g, ok := best[m]; ok {
			out = append(out, g)
		}
	}
	return out
}

// medianFaultGap is the median, over the faults where some member could
// serve writes, of each fault's worst member gap.
func medianFaultGap(faults []FaultReport) time.Duration {
	var ds []time.Duration
	for _, f := range faults {
		if f.MemberCounted {
			ds = append(ds, f.WorstMemberGap)
		}
	}
	return check.Median(ds)
}

// majorityOf is the size of a majority of voters.
func majorityOf(voters int) int { return voters/2 + 1 }

// accountMembers fills in the per-member gaps of every fault and of the run
// (see MemberGap): each member's pinned client's successful writes, against
// the windows in which the member could serve writes.
func accountMembers(rep *Report, h *workload.History, cl *cluster.Cluster, t0 time.Time, end time.Duration) {
	nodes := cl.Nodes()
	members := cluster.Names(nodes)
	byURL := map[string]string{}
	for _, n := range nodes {
		byURL[n.ClientURL] = n.Name
	}
	succ := map[string][]time.Duration{}
	for _, op := range h.Ops {
		if m, ok := byURL[op.Endpoint]; ok && op.Outcome == check.OK && op.IsWrite() {
			succ[m] = append(succ[m], op.Return)
		}
	}
	avail := availability(spans(cl.Topologies(), t0, end), majorityOf(cl.Voters()))
	for i := range rep.Faults {
		f := &rep.Faults[i]
		f.MemberGaps = memberGaps(members, avail, succ, f.Window.Start, max(f.Until, f.Window.End))
	}
	rep.MemberGaps = mergeLongest(members, rep.Faults)
	rep.SummarizeGaps()
}

// SummarizeGaps derives, from the per-member gaps, each fault's worst member
// gap, the run's longest member gap and the median over faults. The member
// whose CPU was starved for the whole run is left out of all three (its own
// clients cannot be expected to be served; what counts is whether the
// others are); its gap stays in MemberGaps. Reports read back from JSON can
// be summarized again.
func (r *Report) SummarizeGaps() {
	for i := range r.Faults {
		f := &r.Faults[i]
		f.WorstMemberGap, f.MemberCounted = worst(f.MemberGaps, r.Starved)
	}
	r.LongestMemberGap, _ = worst(r.MemberGaps, r.Starved)
	r.MedianGap = medianFaultGap(r.Faults)
}
