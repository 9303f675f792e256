package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
		ok   bool
	}{
		{nil, 0, false},
		{[]float64{3}, 3, true},
		{[]float64{5, 1}, 3, true},
		{[]float64{9, 1, 5}, 5, true},
		{[]float64{4, 1, 3, 2}, 2.5, true},
	}
	for _, tt := range tests {
		in := append([]float64(nil), tt.in...)
		got, ok := median(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("median(%v) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		for i := range in {
			if in[i] != tt.in[i] {
				t.Errorf("median reordered its input: %v", tt.in)
			}
		}
	}
}

func TestGroupThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 123456: "123,456", 1234567: "1,234,567", -4500: "-4,500"} {
		if got := groupThousands(n); got != want {
			t.Errorf("groupThousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestRatioDirection(t *testing.T) {
	thr := &metric{name: "put", unit: opsPerSec}
	thr.add("etcd", 1000)
	thr.add("meshkv", 1500)
	if r, b := thr.ratio("meshkv", "etcd"); r != "1.50×" || b != "meshkv" {
		t.Errorf("throughput ratio = %s %s, want 1.50× meshkv", r, b)
	}
	lat := &metric{name: "p50", unit: latency}
	lat.add("etcd", float64(time.Millisecond))
	lat.add("meshkv", float64(2*time.Millisecond))
	if r, b := lat.ratio("meshkv", "etcd"); r != "2.00×" || b != "etcd" {
		t.Errorf("latency ratio = %s %s, want 2.00× etcd (lower is better)", r, b)
	}
	mem := &metric{name: "rss", unit: memoryBytes}
	mem.add("etcd", 100)
	if r, b := mem.ratio("meshkv", "etcd"); r != "n/a" || b != "" {
		t.Errorf("ratio without meshkv values = %s %q, want n/a", r, b)
	}
	mem.add("meshkv", 100)
	if _, b := mem.ratio("meshkv", "etcd"); b != "=" {
		t.Errorf("equal values: better = %q, want =", b)
	}
}

func TestWriteComparison(t *testing.T) {
	put := &metric{name: "put throughput, ops/s", unit: opsPerSec}
	put.add("etcd", 10000)
	put.add("meshkv", 20000)
	put.add("etcd", 12000)
	put.add("meshkv", 25000)
	p50 := &metric{name: "put p50", unit: latency}
	p50.add("etcd", float64(1200*time.Microsecond))
	p50.add("meshkv", float64(800*time.Microsecond))
	cpu := &metric{name: "cpu", unit: cpuPerOps}
	cpu.add("etcd", 120.04)
	cpu.add("meshkv", 60.02)
	rss := &metric{name: "rss", unit: memoryBytes}
	rss.add("meshkv", 300<<20)

	var b strings.Builder
	writeComparison(&b, []*metric{put, p50, cpu, rss}, "meshkv", "etcd")
	want := `| metric | etcd | meshkv | meshkv/etcd | per round | better |
|---|---:|---:|---:|---:|---|
| put throughput, ops/s | 11,000 (10,000–12,000) | 22,500 (20,000–25,000) | 2.05× | 2.04× (2.00–2.08) | meshkv |
| put p50 | 1.20ms | 800µs | 0.67× | n/a | meshkv |
| cpu | 120.0 | 60.0 | 0.50× | n/a | meshkv |
| rss | n/a | 300.0 MiB | n/a | n/a |  |
`
	if got := b.String(); got != want {
		t.Errorf("writeComparison:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteList(t *testing.T) {
	direct := &metric{name: "direct", unit: latency}
	direct.add("meshkv", float64(time.Millisecond))
	relayed := &metric{name: "relayed", unit: latency}
	relayed.add("meshkv", float64(1500*time.Microsecond))
	missing := &metric{name: "missing", unit: latency}
	var b strings.Builder
	writeList(&b, "topology", []*metric{direct, relayed, missing}, "meshkv", true)
	want := `| topology | value | vs first row |
|---|---:|---:|
| direct | 1.00ms | 1.00× |
| relayed | 1.50ms | 1.50× |
| missing | n/a | n/a |
`
	if got := b.String(); got != want {
		t.Errorf("writeList:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"--full", "--only", "table, rss", "--rounds", "3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.rssKeys != fullRSSKeys || o.rounds != 3 || !o.sections[sectionTable] || !o.sections[sectionRSS] || o.sections[sectionLine] || !o.build {
		t.Errorf("options = %+v", o)
	}
	o, err = parseFlags(nil, io.Discard)
	if err != nil || o.rssKeys != 200_000 || len(o.sections) != len(defaultSections) || o.sections[sectionSecurity] || o.rounds < 2 {
		t.Errorf("defaults = %+v, %v", o, err)
	}
	if o, err := parseFlags([]string{"--only", "security"}, io.Discard); err != nil || !o.sections[sectionSecurity] || len(o.sections) != 1 {
		t.Errorf("--only security: %+v, %v", o, err)
	}
	for _, bad := range [][]string{
		{"--rounds", "0"}, {"--only", "nope"}, {"--only", ","}, {"--duration", "0s"},
		{"--rss-keys", "0"}, {"extra"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted bad input", bad)
		}
	}
}
