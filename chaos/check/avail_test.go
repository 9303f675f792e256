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
