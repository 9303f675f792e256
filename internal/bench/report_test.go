package bench

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0ns"},
		{999, "999ns"},
		{1000, "1.00µs"},
		{12345, "12.3µs"},
		{950 * time.Microsecond, "950µs"},
		{999999, "1000µs"},
		{1234567, "1.23ms"},
		{99950 * time.Microsecond, "100ms"},
		{1500 * time.Millisecond, "1.50s"},
		{12300 * time.Millisecond, "12.3s"},
		{-2 * time.Millisecond, "-2.00ms"},
	}
	for _, tt := range tests {
		if got := FormatDuration(tt.d); got != tt.want {
			t.Errorf("FormatDuration(%d) = %q, want %q", int64(tt.d), got, tt.want)
		}
	}
}

func TestFormatRateAndBytes(t *testing.T) {
	rates := map[float64]string{0: "0", 0.5: "0.50", 12.34: "12.3", 24691.7: "24692", -3: "-3.00"}
	for v, want := range rates {
		if got := FormatRate(v); got != want {
			t.Errorf("FormatRate(%v) = %q, want %q", v, got, want)
		}
	}
	sizes := map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 212 << 20: "212.0 MiB", 3 << 30: "3.0 GiB", 5 << 40: "5.0 TiB"}
	for n, want := range sizes {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func sampleResult() *Result {
	lat := Latency{Count: 3000, Min: 100 * time.Microsecond, Mean: 1200 * time.Microsecond,
		P50: time.Millisecond, P90: 2 * time.Millisecond, P99: 5 * time.Millisecond,
		P999: 9 * time.Millisecond, Max: 20 * time.Millisecond}
	return &Result{
		Label:    "127.0.0.1:2379",
		Workload: Mixed, Clients: 256, Conns: 16, Keys: 10000, ValueSize: 256,
		Serializable: true, Mix: "get:70,put:20,txn:10",
		Warmup: time.Second, Window: 3 * time.Second,
		Ops: 3000, OpsPerSec: 1000, Latency: lat,
		Kinds:        map[string]Latency{"txn": lat, "get": lat},
		Conflicts:    4,
		Errors:       2,
		ErrorSamples: []ErrorSample{{Message: "etcdserver: request timed out", Count: 2}},
		CPU:          &CPUUsage{PIDs: []int{1, 2, 3}, Time: 1500 * time.Millisecond, MsPer1000Ops: 500},
		RSS:          &RSSUsage{PIDs: []int{1, 2, 3}, Bytes: 300 << 20},
	}
}

func TestWriteText(t *testing.T) {
	var b strings.Builder
	if err := sampleResult().WriteText(&b); err != nil {
		t.Fatal(err)
	}
	const lat = "p50 1.00ms  p90 2.00ms  p99 5.00ms  p99.9 9.00ms  max 20.0ms  mean 1.20ms"
	want := strings.Join([]string{
		"workload    mixed (clients 256, conns 16, keys 10000, value 256 B, serializable, mix get:70,put:20,txn:10)",
		"target      127.0.0.1:2379",
		"window      3.00s after 1.00s warmup",
		"throughput  1000 ops/s (3000 ops)",
		"latency     " + lat,
		"  get       " + lat + " (3000 ops)",
		"  txn       " + lat + " (3000 ops)",
		"conflicts   4 CAS compares failed",
		"errors      2",
		"            2 × etcdserver: request timed out",
		"server cpu  500.00 ms per 1000 ops (1.50s over pids 1,2,3)",
		"server rss  300.0 MiB (pids 1,2,3)",
		"",
	}, "\n")
	if got := b.String(); got != want {
		t.Errorf("WriteText:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteTextWatchAndEmpty(t *testing.T) {
	r := &Result{Workload: Watch, Clients: 1, Conns: 1, ValueSize: 24, Watchers: 100, Rate: 200,
		Window: time.Second, Events: 10, EventsMissing: 3}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		"watch (clients 1, conns 1, value 24 B, watchers 100, rate 200/s)",
		"event lat.  no samples",
		"events      10 received, 3 missing",
		"errors      0",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("WriteText lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"server cpu", "server rss", "conflicts", "keys"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("WriteText shows %q for a run without it:\n%s", unwanted, got)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	var b strings.Builder
	if err := sampleResult().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(b.String()), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b.String())
	}
	checks := map[string]any{
		"workload":    "mixed",
		"ops_per_sec": 1000.0,
		"window_ns":   3e9,
		"errors":      2.0,
	}
	for k, want := range checks {
		if m[k] != want {
			t.Errorf("json %s = %v, want %v", k, m[k], want)
		}
	}
	lat, _ := m["latency"].(map[string]any)
	if lat["p99_ns"] != 5e6 || lat["p999_ns"] != 9e6 {
		t.Errorf("json latency = %v, want p99_ns 5e6 and p999_ns 9e6", lat)
	}
	cpu, _ := m["cpu"].(map[string]any)
	if cpu["ms_per_1000_ops"] != 500.0 {
		t.Errorf("json cpu = %v", cpu)
	}
	var back Result
	if err := json.Unmarshal([]byte(b.String()), &back); err != nil {
		t.Fatal(err)
	}
	if back.Latency != sampleResult().Latency || back.RSS.Bytes != 300<<20 {
		t.Errorf("round trip lost data: %+v", back)
	}
}
