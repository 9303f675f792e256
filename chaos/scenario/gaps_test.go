package scenario

import (
	"slices"
	"testing"
	"time"

	"github.com/meshkv/meshkv/chaos/check"
	"github.com/meshkv/meshkv/chaos/cluster"
)

const ms = time.Millisecond

func TestAble(t *testing.T) {
	five := []string{"a", "b", "c", "d", "e"}
	tests := []struct {
		name string
		topo cluster.Topology
		want []string
	}{
		{"all linked", cluster.Topology{Live: five}, five},
		{"one isolated", cluster.Topology{Live: five, Blocked: dirs("a-b", "a-c", "a-d", "a-e")}, []string{"b", "c", "d", "e"}},
		{"non-transitive: relays count", cluster.Topology{Live: five, Blocked: dirs("a-b")}, five},
		{"one-way breaks the link", cluster.Topology{Live: []string{"a", "b", "c"}, Blocked: [][2]string{{"a", "b"}, {"a", "c"}}},
			[]string{"b", "c"}},
		{"split 2|3", cluster.Topology{Live: five, Blocked: dirs("a-c", "a-d", "a-e", "b-c", "b-d", "b-e")}, []string{"c", "d", "e"}},
		{"star (quorum loss)", cluster.Topology{Live: five, Blocked: dirs("b-c", "b-d", "b-e", "c-d", "c-e", "d-e")}, five},
		{"paused members do not link", cluster.Topology{Live: []string{"a", "b", "c"}, Paused: []string{"b"}, Blocked: dirs("a-c")}, nil},
		{"a dead member is not live", cluster.Topology{Live: []string{"a", "c"}}, []string{"a", "c"}},
	}
	for _, tc := range tests {
		got := sortedKeys(able(tc.topo, 3-boolInt(len(tc.topo.Live) < 5)))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: able = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// dirs turns "a-b" pairs into both blocked directions.
func dirs(pairs ...string) [][2]string {
	var out [][2]string
	for _, p := range pairs {
		a, b := p[:1], p[2:]
		out = append(out, [2]string{a, b}, [2]string{b, a})
	}
	return out
}

func TestAvailabilityAndMemberGaps(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	live := []string{"n1", "n2", "n3"}
	topos := []cluster.Topology{
		{At: at(0), Live: live},
		{At: at(1000 * ms), Live: live, Blocked: dirs3("n1-n2", "n1-n3")}, // n1 isolated
		{At: at(2000 * ms), Live: live, Blocked: dirs3("n1-n2")},          // n1 back through n3
		{At: at(2500 * ms), Live: live},                                   // healed: no new window for n2, n3
		{At: at(3000 * ms), Live: live, Paused: []string{"n3"}},
	}
	avail := availability(spans(topos, t0, 4000*ms), 2)
	want := map[string][]check.Window{
		"n1": {{Name: "n1", Start: 0, End: 1000 * ms}, {Name: "n1", Start: 2000 * ms, End: 4000 * ms}},
		"n2": {{Name: "n2", Start: 0, End: 4000 * ms}},
		"n3": {{Name: "n3", Start: 0, End: 3000 * ms}},
	}
	for m, w := range want {
		if !slices.Equal(avail[m], w) {
			t.Errorf("availability[%s] = %v, want %v", m, avail[m], w)
		}
	}
	succ := map[string][]time.Duration{
		"n1": {900 * ms, 2300 * ms},             // cut off 1000..2000: not a gap
		"n2": {1100 * ms, 1900 * ms, 2100 * ms}, // 1100..1900 is its longest stretch
		"n3": {},                                // never wrote: the whole span
	}
	gs := memberGaps([]string{"n1", "n2", "n3", "n4"}, avail, succ, 800*ms, 2500*ms)
	got := map[string]MemberGap{}
	for _, g := range gs {
		got[g.Member] = g
	}
	if g := got["n1"]; !g.Counted || g.Len != 300*ms || g.Gap.Start != 2000*ms {
		t.Errorf("n1 gap = %+v, want 300ms from the moment it could write again (2.0s)", g)
	}
	if g := got["n2"]; !g.Counted || g.Len != 800*ms {
		t.Errorf("n2 gap = %+v, want 800ms", g)
	}
	if g := got["n3"]; !g.Counted || g.Len != 1700*ms {
		t.Errorf("n3 gap = %+v, want the whole 1.7s span", g)
	}
	if g := got["n4"]; g.Counted {
		t.Errorf("n4 (never a member) counted: %+v", g)
	}
	if w, ok := worst(gs, ""); !ok || w != 1700*ms {
		t.Errorf("worst = %v, %v", w, ok)
	}
	// A member available for less than minWindow of the span (killed at
	// the start of a fault) is not counted.
	if gs := memberGaps([]string{"n1"}, avail, succ, 990*ms, 1030*ms); gs[0].Counted {
		t.Errorf("n1 counted over 10ms of availability: %+v", gs[0])
	}
	if w, ok := worst(gs, "n3"); !ok || w != 800*ms {
		t.Errorf("worst but the starved n3 = %v, %v; want n2's 800ms", w, ok)
	}
	if w, ok := worst([]MemberGap{{Member: "x"}}, ""); ok || w != 0 {
		t.Errorf("worst of uncounted = %v, %v", w, ok)
	}
}

func dirs3(pairs ...string) [][2]string {
	var out [][2]string
	for _, p := range pairs {
		a, b := p[:2], p[3:]
		out = append(out, [2]string{a, b}, [2]string{b, a})
	}
	return out
}

func TestMergeLongestAndMedian(t *testing.T) {
	faults := []FaultReport{
		{Name: "f1", MemberCounted: true, WorstMemberGap: 500 * ms, MemberGaps: []MemberGap{
			{Member: "n1", Counted: true, Len: 100 * ms}, {Member: "n2", Counted: true, Len: 500 * ms}, {Member: "n3"}}},
		{Name: "f2", MemberCounted: true, WorstMemberGap: 900 * ms, MemberGaps: []MemberGap{
			{Member: "n1", Counted: true, Len: 900 * ms}, {Member: "n2", Counted: true, Len: 200 * ms}, {Member: "n3"}}},
		{Name: "f3", MemberCounted: false, MemberGaps: []MemberGap{{Member: "n1"}, {Member: "n2"}, {Member: "n3"}}},
		{Name: "f4", MemberCounted: true, WorstMemberGap: 100 * ms},
	}
	got := mergeLongest([]string{"n1", "n2", "n3"}, faults)
	want := []MemberGap{
		{Member: "n1", Counted: true, Len: 900 * ms, Fault: "f2"},
		{Member: "n2", Counted: true, Len: 500 * ms, Fault: "f1"},
		{Member: "n3"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("mergeLongest = %+v\nwant %+v", got, want)
	}
	// f3 had no member that could write: left out of the median.
	if m := medianFaultGap(faults); m != 500*ms {
		t.Errorf("median = %v, want 500ms", m)
	}
	if majorityOf(3) != 2 || majorityOf(5) != 3 || majorityOf(4) != 3 {
		t.Error("majorityOf")
	}
}

// sortedKeys lists a map's keys in order (for reports).
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestSummarizeGapsLeavesOutTheStarvedMember(t *testing.T) {
	r := &Report{Starved: "n2", Faults: []FaultReport{
		{Name: "f1", MemberGaps: []MemberGap{{Member: "n1", Counted: true, Len: 300 * ms}, {Member: "n2", Counted: true, Len: 5000 * ms}}},
		{Name: "f2", MemberGaps: []MemberGap{{Member: "n1", Counted: true, Len: 100 * ms}, {Member: "n2", Counted: true, Len: 7000 * ms}}},
		{Name: "f3", MemberGaps: []MemberGap{{Member: "n1"}, {Member: "n2", Counted: true, Len: 9000 * ms}}},
	}}
	r.MemberGaps = mergeLongest([]string{"n1", "n2"}, r.Faults)
	r.SummarizeGaps()
	if r.LongestMemberGap != 300*ms || r.MedianGap != 200*ms {
		t.Errorf("longest %v, median %v; want 300ms and 200ms (n2 starved, f3 without a counted member)", r.LongestMemberGap, r.MedianGap)
	}
	if g := r.MemberGaps[1]; g.Member != "n2" || g.Len != 9000*ms {
		t.Errorf("the starved member's own gap is gone: %+v", g)
	}
	r.Starved = ""
	r.SummarizeGaps()
	if r.LongestMemberGap != 9000*ms || r.MedianGap != 7000*ms {
		t.Errorf("without starvation: longest %v, median %v", r.LongestMemberGap, r.MedianGap)
	}
}
