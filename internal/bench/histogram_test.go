package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestBucketsCoverValues(t *testing.T) {
	prevHi := int64(-1)
	for i := range numBuckets {
		lo, hi := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, want %d (gap or overlap)", i, lo, prevHi+1)
		}
		if hi < lo {
			t.Fatalf("bucket %d: hi %d < lo %d", i, hi, lo)
		}
		for _, v := range []int64{lo, hi, lo + (hi-lo)/2} {
			if got := bucketIndex(v); got != i {
				t.Fatalf("bucketIndex(%d) = %d, want %d", v, got, i)
			}
		}
		if lo >= 2*subBuckets {
			if rel := float64(hi-lo) / float64(lo); rel > 1.0/subBuckets {
				t.Fatalf("bucket %d [%d,%d] is %.4f wide relative to its start", i, lo, hi, rel)
			}
		}
		prevHi = hi
	}
	if prevHi != maxValue || bucketIndex(maxValue) != numBuckets-1 {
		t.Fatalf("buckets end at %d (index %d of %d), want exactly maxValue %d in the last", prevHi, bucketIndex(maxValue), numBuckets, maxValue)
	}
}

// exactQuantile is the reference: the smallest sample with at least q of
// the samples at or below it.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := max(int(math.Ceil(q*float64(len(sorted)))), 1)
	return sorted[rank-1]
}

func TestQuantilesMatchSortedSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	dists := map[string]func() time.Duration{
		"uniform 0-10ms": func() time.Duration { return time.Duration(rng.Int64N(int64(10 * time.Millisecond))) },
		"lognormal": func() time.Duration {
			return time.Duration(math.Exp(rng.NormFloat64()*1.5 + 13)) // median ~440µs, long tail
		},
		"tiny (exact range)": func() time.Duration { return time.Duration(rng.IntN(200)) },
		"bimodal": func() time.Duration {
			if rng.IntN(100) < 95 {
				return 500*time.Microsecond + time.Duration(rng.IntN(100000))
			}
			return 80*time.Millisecond + time.Duration(rng.IntN(1e6))
		},
	}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			h := NewHistogram()
			samples := make([]time.Duration, 20000)
			for i := range samples {
				samples[i] = gen()
				h.Record(samples[i])
			}
			slices.Sort(samples)
			for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
				want := exactQuantile(samples, q)
				got := h.Quantile(q)
				tol := float64(want) / subBuckets
				if math.Abs(float64(got-want)) > tol+1 {
					t.Errorf("q%.3f = %v, want %v ± %.0fns", q, got, want, tol)
				}
			}
			if h.Min() != samples[0] || h.Max() != samples[len(samples)-1] {
				t.Errorf("min/max = %v/%v, want %v/%v", h.Min(), h.Max(), samples[0], samples[len(samples)-1])
			}
			var sum time.Duration
			for _, s := range samples {
				sum += s
			}
			if want := sum / time.Duration(len(samples)); h.Mean() != want {
				t.Errorf("mean = %v, want %v", h.Mean(), want)
			}
			if h.Count() != uint64(len(samples)) {
				t.Errorf("count = %d, want %d", h.Count(), len(samples))
			}
		})
	}
}

func TestHistogramEdges(t *testing.T) {
	h := NewHistogram()
	if got := h.Summary(); got != (Latency{}) {
		t.Errorf("empty summary = %+v, want zero", got)
	}
	h.Record(-5)
	if h.Min() != 0 || h.Max() != 0 {
		t.Errorf("negative sample: min/max %v/%v, want 0/0", h.Min(), h.Max())
	}
	h.Record(1000 * time.Hour)
	if h.Max() != time.Duration(maxValue) {
		t.Errorf("huge sample: max %v, want clamped %v", h.Max(), time.Duration(maxValue))
	}
	if got := h.Quantile(1); got != time.Duration(maxValue) {
		t.Errorf("q1 = %v, want %v", got, time.Duration(maxValue))
	}
	if got := h.Quantile(-1); got != 0 {
		t.Errorf("q(-1) = %v, want 0 (clamped to q0)", got)
	}

	one := NewHistogram()
	one.Record(1234567 * time.Nanosecond)
	for _, q := range []float64{0, 0.5, 1} {
		if got := one.Quantile(q); got != 1234567 {
			t.Errorf("single sample: q%v = %v, want exactly the sample (clamped to min/max)", q, got)
		}
	}
}

func TestMergeAndConcurrentRecord(t *testing.T) {
	a, b := NewHistogram(), NewHistogram()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				h := a
				if g%2 == 1 {
					h = b
				}
				h.Record(time.Duration(g*1000+i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	a.Merge(b)
	if a.Count() != 8000 {
		t.Fatalf("count = %d, want 8000", a.Count())
	}
	if a.Min() != 0 || a.Max() != 7999*time.Microsecond {
		t.Errorf("min/max = %v/%v, want 0/7.999ms", a.Min(), a.Max())
	}
	// 0..7999µs uniformly: the median is 3999µs.
	if got, want := a.Quantile(0.5), 3999*time.Microsecond; math.Abs(float64(got-want)) > float64(want)/subBuckets {
		t.Errorf("median = %v, want about %v", got, want)
	}
}
