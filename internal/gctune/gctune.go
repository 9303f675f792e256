// Package gctune bounds the garbage collector's heap headroom for the meshkv
// binary.
//
// Go's default (GOGC=100) lets the heap grow to twice the live data before a
// collection. A meshkv member holds its whole store in the heap, so at a
// million keys that headroom is hundreds of megabytes of resident memory
// that hold nothing. The tuner watches the live heap after each collection
// and lowers GOGC so that the headroom is the larger of a fixed floor and a
// fraction of the live heap: small stores keep Go's default (and its low GC
// CPU), large ones trade a little GC CPU for much less memory.
//
// The tuner changes process-wide settings, so only the binary runs it; an
// application that embeds meshkv keeps its own GC settings. It does nothing
// when the GOGC environment variable is set.
package gctune

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Defaults of Config.
const (
	DefaultMinHeadroom = 64 << 20
	DefaultFraction    = 0.25
	DefaultInterval    = time.Second
	minPercent         = 10
)

// Config tunes the tuner.
type Config struct {
	// MinHeadroom is the heap headroom in bytes below which GOGC stays at
	// 100 (default 64 MiB).
	MinHeadroom uint64
	// Fraction is the headroom as a fraction of the live heap once that is
	// larger than MinHeadroom (default 0.25).
	Fraction float64
	// Interval between looks at the live heap (default 1s).
	Interval time.Duration
}

func (c Config) withDefaults() Config {
	if c.MinHeadroom == 0 {
		c.MinHeadroom = DefaultMinHeadroom
	}
	if c.Fraction <= 0 {
		c.Fraction = DefaultFraction
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	return c
}

// Percent is the GOGC value that gives a heap of live bytes the configured
// headroom: 100 while the floor is at least the live heap, never below 10.
func (c Config) Percent(live uint64) int {
	c = c.withDefaults()
	if live == 0 {
		return 100
	}
	headroom := math.Max(float64(c.MinHeadroom), c.Fraction*float64(live))
	p := int(math.Ceil(100 * headroom / float64(live)))
	return min(max(p, minPercent), 100)
}

// Run adjusts GOGC until ctx ends, then restores the setting it found. It
// returns at once when the GOGC environment variable is set.
func Run(ctx context.Context, cfg Config) {
	if os.Getenv("GOGC") != "" {
		return
	}
	cfg = cfg.withDefaults()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	current := debug.SetGCPercent(100)
	defer debug.SetGCPercent(current)
	current = 100
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return // this Go release does not report the live heap
		}
		if p := cfg.Percent(sample[0].Value.Uint64()); changed(current, p) {
			debug.SetGCPercent(p)
			current = p
		}
	}
}

// changed reports whether p differs enough from cur to be worth setting
// (a tenth of the value, so a steady heap does not flip it every second).
func changed(cur, p int) bool {
	d := cur - p
	if d < 0 {
		d = -d
	}
	return d*10 >= cur || (p == 100 && cur != 100)
}
