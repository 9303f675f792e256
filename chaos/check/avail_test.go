package check

import (
	"testing"
	"time"
)

func TestLongestGap(t *testing.T) {
	s := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * ms
		}
		return out
	}
	w := Window{Start: 100 * ms, End: 200 * ms}
	tests := []struct {
		name string
		succ []time.Duration
		want time.Duration
	}{
		{"no success", nil, 100 * ms},
		{"only outside", s(50, 250), 100 * ms},
		{"start gap", s(150, 160, 190), 50 * ms},
		{"middle gap", s(190, 105, 110, 180), 70 * ms},
		{"end gap", s(101, 102, 120), 80 * ms},
	}
	for _, tc := range tests {
		got := LongestGap(tc.succ, w)
		if got.Len() != tc.want || got.Start < w.Start || got.End > w.End {
			t.Errorf("%s: LongestGap = %+v (%v), want length %v inside the window", tc.name, got, got.Len(), tc.want)
		}
	}
	if g := LongestGap(s(150, 160, 190), w); g.Start != 100*ms || g.End != 150*ms {
		t.Errorf("start gap = %+v, want 100ms..150ms", g)
	}
}

func TestLongestGapInAndMedian(t *testing.T) {
	succ := []time.Duration{150 * ms, 120 * ms, 410 * ms}
	ws := []Window{{Start: 100 * ms, End: 200 * ms}, {Start: 400 * ms, End: 600 * ms}}
	// Windows: [100,120] [120,150] [150,200] and [400,410] [410,600]; the
	// 200..400 stretch between the windows does not count.
	g := LongestGapIn(succ, ws)
	if g.Start != 410*ms || g.End != 600*ms {
		t.Errorf("LongestGapIn = %+v, want 410ms..600ms", g)
	}
	if g := LongestGapIn(succ, nil); g.Len() != 0 {
		t.Errorf("no windows: %+v", g)
	}
	for _, tc := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{3 * ms}, 3 * ms},
		{[]time.Duration{9 * ms, 1 * ms, 5 * ms}, 5 * ms},
		{[]time.Duration{4 * ms, 1 * ms, 2 * ms, 8 * ms}, 3 * ms},
	} {
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
