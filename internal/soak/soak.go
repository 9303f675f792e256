// Package soak records a long-running meshkv workload and judges whether it
// stays bounded. A Series collects Samples (process memory, raft log length,
// store revisions, operations done) taken at regular times, prints them as a
// table, and compares a measure's late samples with its early ones: under a
// steady workload, memory and the raft log must not grow.
//
// It has no goroutines and no state beyond the Series a caller owns; Sample
// values come from the caller, except RSS, which reads this process's
// resident set size from the proc filesystem (Linux).
package soak

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Errors returned by this package.
var (
	// ErrProc is wrapped by errors reading the process's memory figures.
	ErrProc = errors.New("soak: cannot read process memory")
	// ErrTooFewSamples is returned by Compare when the samples after the
	// warm-up do not fill three windows.
	ErrTooFewSamples = errors.New("soak: too few samples after the warm-up")
)

// statusPath is where Linux reports this process's memory.
const statusPath = "/proc/self/status"

// RSS returns the resident set size of this process in bytes (VmRSS).
func RSS() (int64, error) {
	f, err := os.Open(statusPath)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrProc, err)
	}
	defer f.Close()
	return parseVmRSS(f)
}

// parseVmRSS finds the "VmRSS:  1234 kB" line of a proc status file.
func parseVmRSS(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%w: unexpected VmRSS line %q", ErrProc, sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("%w: unexpected VmRSS line %q", ErrProc, sc.Text())
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrProc, err)
	}
	return 0, fmt.Errorf("%w: no VmRSS line", ErrProc)
}

// Sample is one observation of a running workload.
type Sample struct {
	At        time.Duration // since the run started
	RSS       int64         // resident set size of the process, bytes
	HeapInuse uint64        // runtime.MemStats.HeapInuse, bytes
	// LogEntries is the raft log length above the newest snapshot (the
	// longest among the nodes sampled).
	LogEntries      uint64
	Revision        int64  // store revision
	CompactRevision int64  // store compacted revision
	Ops             uint64 // operations completed since the start
	Errors          uint64 // operations failed since the start
}

// History is the number of revisions the store keeps (Revision -
// CompactRevision).
func (s Sample) History() int64 { return s.Revision - s.CompactRevision }

// Series is the samples of one run, in the order taken. The zero value is
// ready to use; Warmup is the time at the start whose samples Compare
// ignores.
type Series struct {
	Warmup  time.Duration
	samples []Sample
}

// Add appends a sample; samples must be added in time order.
func (s *Series) Add(x Sample) { s.samples = append(s.samples, x) }

// Samples returns the samples added so far. The slice must not be modified.
func (s *Series) Samples() []Sample { return s.samples }

// Before returns the newest sample taken at or before t, if any.
func (s *Series) Before(t time.Duration) (Sample, bool) {
	i, _ := slices.BinarySearchFunc(s.samples, t, func(x Sample, t time.Duration) int { return cmp.Compare(x.At, t) })
	if i < len(s.samples) && s.samples[i].At == t {
		return s.samples[i], true
	}
	if i == 0 {
		return Sample{}, false
	}
	return s.samples[i-1], true
}

// WriteTable writes the samples as an aligned table: time, memory in MiB,
// raft log length, store revisions and the operation rate since the
// previous sample.
func (s *Series) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "t\tRSS MiB\theap MiB\tlog\trevision\tcompacted\thistory\tops/s\terrors\t")
	var prev Sample
	for i, x := range s.samples {
		rate := "-"
		if i > 0 && x.At > prev.At {
			rate = fmt.Sprintf("%.0f", float64(x.Ops-prev.Ops)/(x.At-prev.At).Seconds())
		}
		warm := ""
		if x.At < s.Warmup {
			warm = " w"
		}
		fmt.Fprintf(tw, "%s%s\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%s\t%d\t\n",
			x.At.Round(time.Second), warm, mib(x.RSS), mib(int64(x.HeapInuse)), x.LogEntries,
			x.Revision, x.CompactRevision, x.History(), rate, x.Errors)
		prev = x
	}
	return tw.Flush()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// Trend compares one measure early and late in a run: the samples after the
// warm-up are cut into three windows of equal count, and the first and last
// windows are summarized.
type Trend struct {
	Name               string
	FirstAvg, LastAvg  float64
	FirstMax, LastMax  float64
	PerWindow, Skipped int // samples per window; warm-up samples skipped
}

// Ratio is LastAvg / FirstAvg (1 when both are zero).
func (t Trend) Ratio() float64 { return ratio(t.LastAvg, t.FirstAvg) }

// MaxRatio is LastMax / FirstMax (1 when both are zero).
func (t Trend) MaxRatio() float64 { return ratio(t.LastMax, t.FirstMax) }

func ratio(late, early float64) float64 {
	switch {
	case late == 0 && early == 0:
		return 1
	case early == 0:
		return late / 1e-9 // growth from nothing: huge, never within a bound
	}
	return late / early
}

func (t Trend) String() string {
	return fmt.Sprintf("%s: first third avg %.4g max %.4g, last third avg %.4g max %.4g (avg ×%.2f, max ×%.2f; %d samples per third)",
		t.Name, t.FirstAvg, t.FirstMax, t.LastAvg, t.LastMax, t.Ratio(), t.MaxRatio(), t.PerWindow)
}

// Compare summarizes measure f over the first and last thirds of the
// samples taken at or after Warmup. It needs at least three such samples.
func (s *Series) Compare(name string, f func(Sample) float64) (Trend, error) {
	skip := 0
	for skip < len(s.samples) && s.samples[skip].At < s.Warmup {
		skip++
	}
	rest := s.samples[skip:]
	n := len(rest) / 3
	if n == 0 {
		return Trend{}, fmt.Errorf("%w: %d samples after %v, want at least 3", ErrTooFewSamples, len(rest), s.Warmup)
	}
	t := Trend{Name: name, PerWindow: n, Skipped: skip}
	t.FirstAvg, t.FirstMax = summarize(rest[:n], f)
	t.LastAvg, t.LastMax = summarize(rest[len(rest)-n:], f)
	return t, nil
}

func summarize(xs []Sample, f func(Sample) float64) (avg, peak float64) {
	for i, x := range xs {
		v := f(x)
		avg += v
		if i == 0 || v > peak {
			peak = v
		}
	}
	return avg / float64(len(xs)), peak
}
