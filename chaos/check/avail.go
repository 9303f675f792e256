package check

import (
	"slices"
	"time"
)

// Window is a stretch of a run, measured from the start of the run.
type Window struct {
	Name  string        `json:"name"`
	Start time.Duration `json:"start"`
	End   time.Duration `json:"end"`
}

// Gap is a stretch of a run without a success, measured from the start of
// the run.
type Gap struct {
	Start time.Duration `json:"start"`
	End   time.Duration `json:"end"`
}

// Len is the gap's length.
func (g Gap) Len() time.Duration { return g.End - g.Start }

// LongestGap is the longest stretch inside w without a success: between the
// window's start and the first success in it, between two successes, or
// between the last success and the window's end. successes are times from
// the start of the run, in any order. A window without a success is one gap
// as long as the window.
func LongestGap(successes []time.Duration, w Window) Gap {
	s := slices.Clone(successes)
	slices.Sort(s)
	prev := w.Start
	var longest Gap
	for _, t := range s {
		if t < w.Start {
			continue
		}
		if t > w.End {
			break
		}
		if t-prev > longest.Len() {
			longest = Gap{Start: prev, End: t}
		}
		prev = t
	}
	if w.End-prev > longest.Len() {
		longest = Gap{Start: prev, End: w.End}
	}
	return longest
}

// LongestGapIn is the longest stretch without a success inside any of the
// windows, each window measured on its own as in LongestGap (a stretch
// never spans the time between two windows). No windows: no gap.
func LongestGapIn(successes []time.Duration, ws []Window) Gap {
	s := slices.Clone(successes)
	slices.Sort(s)
	var longest Gap
	for _, w := range ws {
		if g := LongestGap(s, w); g.Len() > longest.Len() {
			longest = g
		}
	}
	return longest
}

// Median is the median of ds (the mean of the two middle values for an
// even count); zero for none.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}
