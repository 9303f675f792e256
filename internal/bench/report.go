package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Result is what one run measured. In JSON, durations are integer
// nanoseconds.
type Result struct {
	// Label names what was measured (the endpoints, a system name); set by
	// the caller, printed as is.
	Label string `json:"label,omitempty"`

	Workload     Workload `json:"workload"`
	Clients      int      `json:"clients"`
	Conns        int      `json:"conns"`
	Keys         int      `json:"keys"`
	ValueSize    int      `json:"value_size"`
	Serializable bool     `json:"serializable,omitempty"`
	Locks        int      `json:"locks,omitempty"`
	Watchers     int      `json:"watchers,omitempty"`
	Mix          string   `json:"mix,omitempty"`
	Rate         float64  `json:"rate,omitempty"`

	// Warmup and Window are the unrecorded and the measured time.
	Warmup time.Duration `json:"warmup_ns"`
	Window time.Duration `json:"window_ns"`
	// Ops counts operations that completed successfully in the window.
	Ops       uint64  `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	// Latency is the distribution of the workload's measure: operation
	// latency, or write-to-event latency for Watch.
	Latency Latency `json:"latency"`
	// Kinds breaks operations down by kind: get, put and txn for Mixed; put
	// (the writers' latency) for Watch.
	Kinds map[string]Latency `json:"kinds,omitempty"`
	// Conflicts counts CAS transactions whose compare failed (Txn, Mixed).
	Conflicts uint64 `json:"conflicts,omitempty"`
	// Events counts watch events received for writes sent in the window,
	// and EventsMissing those that never arrived (Watch).
	Events        uint64 `json:"events,omitempty"`
	EventsMissing uint64 `json:"events_missing,omitempty"`
	// Errors counts failed operations in the window; ErrorSamples holds the
	// first few distinct messages, with how often each occurred anywhere in
	// the run.
	Errors       uint64        `json:"errors"`
	ErrorSamples []ErrorSample `json:"error_samples,omitempty"`

	CPU *CPUUsage `json:"cpu,omitempty"`
	RSS *RSSUsage `json:"rss,omitempty"`
	// Scrapes reports the metrics scraping of Config.ScrapeURLs.
	Scrapes *ScrapeStats `json:"scrapes,omitempty"`
}

// ScrapeStats are the scrapes made during a run.
type ScrapeStats struct {
	URLs     int           `json:"urls"`
	Interval time.Duration `json:"interval_ns"`
	// Count and Failed count the scrapes (failed: not 200 or not read
	// whole); Bytes is the size of the last page, summed over the URLs'
	// last pages; Latency is the time each took.
	Count   uint64  `json:"count"`
	Failed  uint64  `json:"failed"`
	Bytes   int64   `json:"bytes"`
	Latency Latency `json:"latency"`
}

// ErrorSample is one distinct error message and its count.
type ErrorSample struct {
	Message string `json:"message"`
	Count   uint64 `json:"count"`
}

// CPUUsage is the servers' CPU time over the measured window.
type CPUUsage struct {
	PIDs []int `json:"pids"`
	// Time is user+system CPU time summed over PIDs (10ms resolution).
	Time time.Duration `json:"time_ns"`
	// MsPer1000Ops is Time in milliseconds per 1000 operations (0 when no
	// operation completed).
	MsPer1000Ops float64 `json:"ms_per_1000_ops"`
}

// RSSUsage is the servers' resident memory at the end of the run.
type RSSUsage struct {
	PIDs  []int `json:"pids"`
	Bytes int64 `json:"bytes"`
}

// WriteJSON writes r as indented JSON followed by a newline.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r for people, one aspect per line.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	line := func(name, format string, args ...any) {
		fmt.Fprintf(&b, "%-11s %s\n", name, fmt.Sprintf(format, args...))
	}
	line("workload", "%s (%s)", r.Workload, r.params())
	if r.Label != "" {
		line("target", "%s", r.Label)
	}
	if r.Warmup > 0 {
		line("window", "%s after %s warmup", FormatDuration(r.Window), FormatDuration(r.Warmup))
	} else {
		line("window", "%s", FormatDuration(r.Window))
	}
	line("throughput", "%s ops/s (%d ops)", FormatRate(r.OpsPerSec), r.Ops)
	measure := "latency"
	if r.Workload == Watch {
		measure = "event lat."
	}
	line(measure, "%s", r.Latency)
	for _, k := range sortedKeys(r.Kinds) {
		line("  "+k, "%s (%d ops)", r.Kinds[k], r.Kinds[k].Count)
	}
	if r.Conflicts > 0 {
		line("conflicts", "%d CAS compares failed", r.Conflicts)
	}
	if r.Workload == Watch {
		line("events", "%d received, %d missing", r.Events, r.EventsMissing)
	}
	line("errors", "%d", r.Errors)
	for _, s := range r.ErrorSamples {
		line("", "%d × %s", s.Count, s.Message)
	}
	if r.CPU != nil {
		line("server cpu", "%.2f ms per 1000 ops (%s over pids %s)", r.CPU.MsPer1000Ops, FormatDuration(r.CPU.Time), joinInts(r.CPU.PIDs))
	}
	if r.RSS != nil {
		line("server rss", "%s (pids %s)", FormatBytes(r.RSS.Bytes), joinInts(r.RSS.PIDs))
	}
	if s := r.Scrapes; s != nil {
		line("scrapes", "%d (%d failed) of %d URLs every %s, %s per round; %s", s.Count, s.Failed, s.URLs,
			FormatDuration(s.Interval), FormatBytes(s.Bytes), s.Latency)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// params describes the run's parameters in one line.
func (r *Result) params() string {
	p := []string{
		fmt.Sprintf("clients %d", r.Clients),
		fmt.Sprintf("conns %d", r.Conns),
	}
	switch r.Workload {
	case Put, Get, Txn, Mixed, Load:
		p = append(p, fmt.Sprintf("keys %d", r.Keys))
	}
	switch r.Workload {
	case Put, Txn, Mixed, Load, Watch:
		p = append(p, fmt.Sprintf("value %d B", r.ValueSize))
	}
	if r.Workload == Get || r.Workload == Mixed {
		if r.Serializable {
			p = append(p, "serializable")
		} else {
			p = append(p, "linearizable")
		}
	}
	if r.Workload == Lock {
		p = append(p, fmt.Sprintf("locks %d", r.Locks))
	}
	if r.Workload == Watch {
		p = append(p, fmt.Sprintf("watchers %d", r.Watchers))
	}
	if r.Mix != "" {
		p = append(p, "mix "+r.Mix)
	}
	if r.Rate > 0 {
		p = append(p, fmt.Sprintf("rate %s/s", FormatRate(r.Rate)))
	}
	return strings.Join(p, ", ")
}

// String formats the usual quantiles on one line.
func (l Latency) String() string {
	if l.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s",
		FormatDuration(l.P50), FormatDuration(l.P90), FormatDuration(l.P99),
		FormatDuration(l.P999), FormatDuration(l.Max), FormatDuration(l.Mean))
}

// FormatDuration prints d with three significant digits in the largest unit
// that keeps it at least 1 (ns, µs, ms or s): 950µs, 1.23ms, 12.3s.
func FormatDuration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d < time.Microsecond:
		s = strconv.FormatInt(int64(d), 10) + "ns"
	case d < time.Millisecond:
		s = sig3(float64(d)/float64(time.Microsecond)) + "µs"
	case d < time.Second:
		s = sig3(float64(d)/float64(time.Millisecond)) + "ms"
	default:
		s = sig3(d.Seconds()) + "s"
	}
	if neg {
		s = "-" + s
	}
	return s
}

// sig3 prints a positive number with three significant digits (more for
// numbers of 1000 and above, which keep their integer part).
func sig3(v float64) string {
	switch {
	case v >= 99.95:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 9.995:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// FormatRate prints an operation rate: whole numbers from 100 up, three
// significant digits below.
func FormatRate(v float64) string {
	if v < 0 {
		return "-" + FormatRate(-v)
	}
	if v == 0 {
		return "0"
	}
	return sig3(v)
}

// FormatBytes prints a size in the largest binary unit that keeps it at
// least 1, with one decimal: 512 B, 1.5 KiB, 212.3 MiB.
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, u := float64(n)/unit, "KiB"
	for _, next := range []string{"MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, u = v/unit, next
	}
	return fmt.Sprintf("%.1f %s", v, u)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
