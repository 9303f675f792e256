package bench

import (
	"errors"
	"testing"
	"time"
)

func TestParseMix(t *testing.T) {
	good := map[string]Mix{
		"get:70,put:20,txn:10": {70, 20, 10},
		" put:1 ":              {Put: 1},
		"txn:3,get:0":          {Txn: 3},
	}
	for s, want := range good {
		got, err := ParseMix(s)
		if err != nil || got != want {
			t.Errorf("ParseMix(%q) = %+v, %v; want %+v", s, got, err, want)
		}
		if back, err := ParseMix(got.String()); err != nil || back != got {
			t.Errorf("ParseMix(%q.String()) = %+v, %v", s, back, err)
		}
	}
	for _, s := range []string{"", "get:0", "get", "get:-1", "get:x", "del:5", "get:1,,put"} {
		if _, err := ParseMix(s); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParseMix(%q): err %v, want ErrInvalidConfig", s, err)
		}
	}
}

func TestParseWorkload(t *testing.T) {
	for _, w := range Workloads() {
		if got, err := ParseWorkload(string(w)); err != nil || got != w {
			t.Errorf("ParseWorkload(%q) = %q, %v", w, got, err)
		}
	}
	if _, err := ParseWorkload("PUT"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("ParseWorkload(PUT): err %v, want ErrInvalidConfig", err)
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Workload: Put}
	if err := ok.Validate(); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	bad := map[string]func(*Config){
		"no workload":               func(c *Config) { c.Workload = "" },
		"unknown workload":          func(c *Config) { c.Workload = "scan" },
		"negative clients":          func(c *Config) { c.Clients = -1 },
		"negative keys":             func(c *Config) { c.Keys = -1 },
		"negative value":            func(c *Config) { c.ValueSize = -1 },
		"negative duration":         func(c *Config) { c.Duration = -time.Second },
		"negative warmup":           func(c *Config) { c.Warmup = -time.Second },
		"negative rate":             func(c *Config) { c.Rate = -1 },
		"fractional TTL":            func(c *Config) { c.LeaseTTL = 1500 * time.Millisecond },
		"negative mix weight":       func(c *Config) { c.Mix = Mix{Get: -1, Put: 2} },
		"bad pid":                   func(c *Config) { c.CPUPIDs = []int{0} },
		"bad rss pid":               func(c *Config) { c.RSSPIDs = []int{-4} },
		"connect without endpoints": func(c *Config) { c.Workload = Connect },
	}
	for name, mutate := range bad {
		c := ok
		mutate(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidConfig", name, err)
		}
	}
	d := Config{Workload: Watch, ValueSize: 3}.withDefaults()
	if d.ValueSize != minWatchValue || d.Clients != DefaultClients || d.Mix != DefaultMix() || d.Seed != 1 {
		t.Errorf("withDefaults = %+v", d)
	}
}

func TestStamp(t *testing.T) {
	for _, size := range []int{minWatchValue, 256} {
		v := stamp(123456789*time.Nanosecond, size)
		if len(v) != size {
			t.Errorf("stamp size %d: got %d bytes", size, len(v))
		}
		got, err := parseStamp([]byte(v))
		if err != nil || got != 123456789 {
			t.Errorf("parseStamp(stamp) = %v, %v", got, err)
		}
	}
	for _, v := range []string{"", "12", "abcdefghijklmnopqrstuvwxyz"} {
		if _, err := parseStamp([]byte(v)); err == nil {
			t.Errorf("parseStamp(%q) accepted a value without a timestamp", v)
		}
	}
}
