package gctune

import (
	"context"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	c := Config{MinHeadroom: 64 << 20, Fraction: 0.25}
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 100},
		{1 << 20, 100},
		{64 << 20, 100},
		{128 << 20, 50},
		{256 << 20, 25},
		{1 << 30, 25},
		{64 << 30, 25},
	} {
		if got := c.Percent(tc.live); got != tc.want {
			t.Errorf("Percent(%d MiB) = %d, want %d", tc.live>>20, got, tc.want)
		}
	}
	if got := (Config{MinHeadroom: 1, Fraction: 0.01}).Percent(1 << 30); got != minPercent {
		t.Errorf("tiny fraction: Percent = %d, want the floor %d", got, minPercent)
	}
	if got := (Config{}).Percent(4 << 30); got != 25 {
		t.Errorf("defaults: Percent(4 GiB) = %d, want 25", got)
	}
}

func TestChanged(t *testing.T) {
	for _, tc := range []struct {
		cur, p int
		want   bool
	}{
		{100, 100, false}, {100, 95, false}, {100, 90, true}, {25, 24, false}, {25, 20, true}, {40, 100, true},
	} {
		if got := changed(tc.cur, tc.p); got != tc.want {
			t.Errorf("changed(%d, %d) = %v, want %v", tc.cur, tc.p, got, tc.want)
		}
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestRun: a live heap well above the floor lowers GOGC; ending the tuner
// restores it.
func TestRun(t *testing.T) {
	t.Setenv("GOGC", "")
	live := make([][]byte, 64)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	runtime.GC()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, Config{MinHeadroom: 1 << 20, Fraction: 0.25, Interval: 5 * time.Millisecond})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for gogc() > 30 {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC still %d with %d MiB live", gogc(), len(live))
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if g := gogc(); g != 100 {
		t.Fatalf("GOGC after the tuner ended = %d, want 100", g)
	}
	runtime.KeepAlive(live)
}

// TestRunRespectsGOGC: with GOGC set by the user the tuner does nothing.
func TestRunRespectsGOGC(t *testing.T) {
	t.Setenv("GOGC", "100")
	done := make(chan struct{})
	go func() { defer close(done); Run(context.Background(), Config{}) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return with GOGC set")
	}
}
