package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram bucket layout: log-linear, as HDR histograms. Values below
// 2*subBuckets nanoseconds have a bucket each; above that, every power of two
// is split into subBuckets equal buckets, so a recorded value is known to
// within 1/subBuckets (0.8%) of itself. Values are clamped to maxValue.
const (
	subBucketBits = 7
	subBuckets    = 1 << subBucketBits
	maxBits       = 42
	// maxValue is the largest latency the histogram distinguishes (about 73
	// minutes); longer ones are recorded as maxValue.
	maxValue = int64(1)<<maxBits - 1
	// numBuckets covers every index bucketIndex returns up to maxValue: 2
	// linear groups, then one group per further power of two.
	numBuckets = (maxBits - subBucketBits + 1) * subBuckets
)

// Histogram records latencies in bounded memory (about 37 KiB, whatever the
// number of values) and answers quantiles to within 1%. Min, max, count and
// mean are exact. It is safe for concurrent use: Record uses atomics only, so
// many workers can share one histogram without a lock. The zero value is not
// usable; call NewHistogram.
type Histogram struct {
	counts []atomic.Uint64
	count  atomic.Uint64
	sum    atomic.Int64 // nanoseconds; overflows only after ~292 years of latency
	min    atomic.Int64
	max    atomic.Int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	h := &Histogram{counts: make([]atomic.Uint64, numBuckets)}
	h.min.Store(math.MaxInt64)
	return h
}

// bucketIndex maps a non-negative value to its bucket.
func bucketIndex(v int64) int {
	shift := bits.Len64(uint64(v)) - (subBucketBits + 1)
	if shift <= 0 {
		return int(v)
	}
	return shift*subBuckets + int(v>>shift)
}

// bucketRange returns the smallest and largest value that map to bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < 2*subBuckets {
		return int64(i), int64(i)
	}
	shift := i/subBuckets - 1
	m := int64(i - shift*subBuckets)
	return m << shift, (m+1)<<shift - 1
}

// Record adds one latency. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if v > maxValue {
		v = maxValue
	}
	h.counts[bucketIndex(v)].Add(1)
	h.count.Add(1)
	h.sum.Add(v)
	lower(&h.min, v)
	raise(&h.max, v)
}

// lower sets a to v if v is smaller.
func lower(a *atomic.Int64, v int64) {
	for cur := a.Load(); v < cur && !a.CompareAndSwap(cur, v); cur = a.Load() {
	}
}

// raise sets a to v if v is larger.
func raise(a *atomic.Int64, v int64) {
	for cur := a.Load(); v > cur && !a.CompareAndSwap(cur, v); cur = a.Load() {
	}
}

// Merge adds every value recorded in o to h. o should not be recorded into
// concurrently, or the merge sees part of those values.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if n := o.counts[i].Load(); n > 0 {
			h.counts[i].Add(n)
		}
	}
	h.count.Add(o.count.Load())
	h.sum.Add(o.sum.Load())
	lower(&h.min, o.min.Load())
	raise(&h.max, o.max.Load())
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// Quantile returns the value at quantile q (0 ≤ q ≤ 1): the smallest value
// such that at least q of all values are ≤ it, as the midpoint of its bucket
// (exact below 256ns, for the smallest and the largest value, and never
// outside [Min, Max]). It returns 0 when nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	total := h.count.Load()
	if total == 0 {
		return 0
	}
	q = max(0, min(1, q))
	rank := uint64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	switch rank {
	case 1:
		return h.Min()
	case total:
		return h.Max()
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			v = max(v, h.min.Load())
			v = min(v, h.max.Load())
			return time.Duration(v)
		}
	}
	return time.Duration(h.max.Load()) // counts raced ahead of count: the top
}

// Min returns the smallest recorded value (0 when empty).
func (h *Histogram) Min() time.Duration {
	if h.count.Load() == 0 {
		return 0
	}
	return time.Duration(h.min.Load())
}

// Max returns the largest recorded value (0 when empty).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean returns the mean of the recorded values (0 when empty).
func (h *Histogram) Mean() time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / int64(n))
}

// Summary returns the usual quantiles of the histogram.
func (h *Histogram) Summary() Latency {
	return Latency{
		Count: h.Count(),
		Min:   h.Min(),
		Mean:  h.Mean(),
		P50:   h.Quantile(0.50),
		P90:   h.Quantile(0.90),
		P99:   h.Quantile(0.99),
		P999:  h.Quantile(0.999),
		Max:   h.Max(),
	}
}

// Latency summarises a latency distribution. In JSON, durations are integer
// nanoseconds.
type Latency struct {
	Count uint64        `json:"count"`
	Min   time.Duration `json:"min_ns"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
}
