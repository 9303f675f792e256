package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshkv/meshkv/internal/bench"
)

// unit says how a metric's values are printed and which way is better.
type unit int

const (
	opsPerSec   unit = iota // operations per second; higher is better
	latency                 // nanoseconds; lower is better
	cpuPerOps               // ms of CPU per 1000 operations; lower is better
	memoryBytes             // bytes; lower is better
)

func (u unit) higherIsBetter() bool { return u == opsPerSec }

// format prints one value of the unit.
func (u unit) format(v float64) string {
	switch u {
	case opsPerSec:
		return groupThousands(int64(math.Round(v)))
	case latency:
		return bench.FormatDuration(time.Duration(v))
	case cpuPerOps:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return bench.FormatBytes(int64(v))
	}
}

func (u unit) String() string {
	return [...]string{"ops/s", "latency", "CPU ms / 1000 ops", "RSS"}[u]
}

// groupThousands prints n with commas between thousands: 1,234,567.
func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// metric is one row of a comparison: values per system, one per round.
type metric struct {
	name   string
	unit   unit
	values map[string][]float64 // by system name
}

func (m *metric) add(system string, v float64) {
	if m.values == nil {
		m.values = map[string][]float64{}
	}
	m.values[system] = append(m.values[system], v)
}

// median returns the median of vs (the mean of the middle two for an even
// count) and whether there was any value.
func median(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2], true
	}
	return (s[n/2-1] + s[n/2]) / 2, true
}

// cell prints the median of a system's values with their range when there
// are several.
func (m *metric) cell(system string) string {
	vs := m.values[system]
	med, ok := median(vs)
	if !ok {
		return "n/a"
	}
	s := m.unit.format(med)
	if len(vs) > 1 {
		s += fmt.Sprintf(" (%s–%s)", m.unit.format(slices.Min(vs)), m.unit.format(slices.Max(vs)))
	}
	return s
}

// ratio prints the median of system a over that of system b, and which of
// the two is better by the unit's direction ("" when either is missing or
// zero).
func (m *metric) ratio(a, b string) (ratio, better string) {
	ma, okA := median(m.values[a])
	mb, okB := median(m.values[b])
	if !okA || !okB || mb == 0 {
		return "n/a", ""
	}
	r := ma / mb
	switch {
	case ma == mb:
		better = "="
	case (ma > mb) == m.unit.higherIsBetter():
		better = a
	default:
		better = b
	}
	return strconv.FormatFloat(r, 'f', 2, 64) + "×", better
}

// roundRatios prints the median and range of the per-round ratios of
// system a over system b: the runs of one round ran back to back, so their
// ratio is less exposed to a machine whose load changes than the ratio of
// medians. "n/a" unless both have the same number of values (a failed run
// leaves its round out of one system only) and there are at least two.
func (m *metric) roundRatios(a, b string) string {
	va, vb := m.values[a], m.values[b]
	if len(va) != len(vb) || len(va) < 2 {
		return "n/a"
	}
	var rs []float64
	for i := range va {
		if vb[i] == 0 {
			return "n/a"
		}
		rs = append(rs, va[i]/vb[i])
	}
	med, _ := median(rs)
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	return fmt.Sprintf("%s× (%s–%s)", f(med), f(slices.Min(rs)), f(slices.Max(rs)))
}

// writeComparison writes a markdown table of metrics for systems a and b
// (medians with ranges, the ratio of the medians, the per-round ratios,
// the better one).
func writeComparison(b *strings.Builder, metrics []*metric, a, bName string) {
	fmt.Fprintf(b, "| metric | %s | %s | %s/%s | per round | better |\n", bName, a, a, bName)
	b.WriteString("|---|---:|---:|---:|---:|---|\n")
	for _, m := range metrics {
		r, better := m.ratio(a, bName)
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", m.name, m.cell(bName), m.cell(a), r, m.roundRatios(a, bName), better)
	}
}

// writeList writes a markdown table of metrics of single systems, each row
// against the first row's median (the reference) when base is true.
func writeList(b *strings.Builder, title string, rows []*metric, system string, base bool) {
	if base {
		fmt.Fprintf(b, "| %s | value | vs first row |\n|---|---:|---:|\n", title)
	} else {
		fmt.Fprintf(b, "| %s | value |\n|---|---:|\n", title)
	}
	ref, haveRef := 0.0, false
	if len(rows) > 0 {
		ref, haveRef = median(rows[0].values[system])
	}
	for _, m := range rows {
		if !base {
			fmt.Fprintf(b, "| %s | %s |\n", m.name, m.cell(system))
			continue
		}
		rel := "n/a"
		if v, ok := median(m.values[system]); ok && haveRef && ref != 0 {
			rel = strconv.FormatFloat(v/ref, 'f', 2, 64) + "×"
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", m.name, m.cell(system), rel)
	}
}
