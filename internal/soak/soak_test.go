package soak

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseVmRSS(t *testing.T) {
	const status = "Name:\tmeshkv\nVmPeak:\t  3060 kB\nVmRSS:\t    1684 kB\nVmData:\t 360 kB\n"
	got, err := parseVmRSS(strings.NewReader(status))
	if err != nil || got != 1684<<10 {
		t.Fatalf("parseVmRSS = %d, %v; want %d", got, err, 1684<<10)
	}
	for _, bad := range []string{"", "Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n", "VmRSS:\t-1 kB\n", "VmRSS:\n"} {
		if n, err := parseVmRSS(strings.NewReader(bad)); !errors.Is(err, ErrProc) {
			t.Errorf("parseVmRSS(%q) = %d, %v; want ErrProc", bad, n, err)
		}
	}
}

func TestRSS(t *testing.T) {
	n, err := RSS()
	if err != nil {
		t.Skipf("no proc filesystem: %v", err)
	}
	if n < 1<<20 {
		t.Fatalf("RSS = %d bytes: a Go test process holds more than 1 MiB", n)
	}
}

// series returns samples one second apart whose RSS is f(i).
func series(warmup time.Duration, n int, f func(i int) int64) *Series {
	s := &Series{Warmup: warmup}
	for i := range n {
		s.Add(Sample{At: time.Duration(i) * time.Second, RSS: f(i), Ops: uint64(100 * i)})
	}
	return s
}

func rss(x Sample) float64 { return float64(x.RSS) }

func TestCompare(t *testing.T) {
	// Ten warm-up samples that grow fast, then a flat sawtooth.
	flat := series(10*time.Second, 40, func(i int) int64 {
		if i < 10 {
			return int64(i) * 1000
		}
		return 100 + int64(i%3)*10
	})
	tr, err := flat.Compare("rss", rss)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Skipped != 10 || tr.PerWindow != 10 {
		t.Fatalf("skipped %d, per window %d; want 10 and 10", tr.Skipped, tr.PerWindow)
	}
	if r := tr.Ratio(); r < 0.95 || r > 1.05 {
		t.Fatalf("flat series ratio %.3f (%v), want about 1", r, tr)
	}
	if tr.FirstMax != 120 || tr.LastMax != 120 {
		t.Fatalf("maxima %v and %v, want 120", tr.FirstMax, tr.LastMax)
	}

	growing := series(0, 30, func(i int) int64 { return 100 + int64(i)*100 })
	tr, err = growing.Compare("rss", rss)
	if err != nil {
		t.Fatal(err)
	}
	// First third averages 550, last third 2550.
	if tr.FirstAvg != 550 || tr.LastAvg != 2550 || tr.Ratio() < 4 {
		t.Fatalf("growing series: %v", tr)
	}

	zero := series(0, 9, func(int) int64 { return 0 })
	if tr, _ := zero.Compare("rss", rss); tr.Ratio() != 1 || tr.MaxRatio() != 1 {
		t.Fatalf("all-zero series ratios %v %v, want 1", tr.Ratio(), tr.MaxRatio())
	}
	fromZero := series(0, 9, func(i int) int64 { return int64(i / 6) })
	if tr, _ := fromZero.Compare("rss", rss); tr.Ratio() < 1e6 {
		t.Fatalf("growth from zero has ratio %v, want huge", tr.Ratio())
	}

	short := series(10*time.Second, 12, func(int) int64 { return 1 })
	if _, err := short.Compare("rss", rss); !errors.Is(err, ErrTooFewSamples) {
		t.Fatalf("two samples after the warm-up: err %v, want ErrTooFewSamples", err)
	}
}

func TestWriteTable(t *testing.T) {
	s := &Series{Warmup: 2 * time.Second}
	s.Add(Sample{At: time.Second, RSS: 10 << 20, HeapInuse: 5 << 20, LogEntries: 7, Revision: 50, CompactRevision: 10, Ops: 100})
	s.Add(Sample{At: 3 * time.Second, RSS: 12 << 20, HeapInuse: 6 << 20, LogEntries: 9, Revision: 90, CompactRevision: 40, Ops: 500, Errors: 2})
	var b strings.Builder
	if err := s.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table has %d lines, want a header and 2 rows:\n%s", len(lines), b.String())
	}
	// Row 2: 400 ops over 2 s; history 50; marked as past the warm-up.
	for _, want := range []string{"1s w", "10.0", "5.0", "40"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row 1 %q lacks %q", lines[1], want)
		}
	}
	for _, want := range []string{"3s", "12.0", "6.0", " 50", "200", " 2"} {
		if !strings.Contains(lines[2], want) {
			t.Errorf("row 2 %q lacks %q", lines[2], want)
		}
	}
	if strings.Contains(lines[2], " w") {
		t.Errorf("row 2 %q is marked as warm-up", lines[2])
	}
}

func TestBefore(t *testing.T) {
	s := series(0, 5, func(i int) int64 { return int64(i) })
	if _, ok := s.Before(-time.Second); ok {
		t.Fatal("a sample before the first one")
	}
	for _, c := range []struct {
		at   time.Duration
		want int64
	}{{0, 0}, {1500 * time.Millisecond, 1}, {2 * time.Second, 2}, {time.Hour, 4}} {
		if x, ok := s.Before(c.at); !ok || x.RSS != c.want {
			t.Errorf("Before(%v) = %+v, %v; want the sample with RSS %d", c.at, x, ok, c.want)
		}
	}
}
