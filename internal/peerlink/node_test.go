package peerlink

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	id, _ := NewIdentity()
	ok := Config{Identity: id}
	if err := ok.Validate(); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	for name, mod := range map[string]func(*Config){
		"no identity":         func(c *Config) { c.Identity = nil },
		"bad listen":          func(c *Config) { c.ListenAddr = "nope" },
		"advertise port 0":    func(c *Config) { c.AdvertiseAddr = "10.0.0.1:0" },
		"advertise no host":   func(c *Config) { c.AdvertiseAddr = ":2380" },
		"long cluster name":   func(c *Config) { c.ClusterName = strings.Repeat("c", MaxClusterName+1) },
		"long app hello":      func(c *Config) { c.AppHello = make([]byte, MaxAppHello+1) },
		"tiny datagrams":      func(c *Config) { c.MaxDatagram = 100 },
		"tiny window":         func(c *Config) { c.StreamWindow = 1000 },
		"negative queue":      func(c *Config) { c.SendQueue = -1 },
		"negative rate":       func(c *Config) { c.SourceRate = -1 },
		"negative timeout":    func(c *Config) { c.DialTimeout = -time.Second },
		"dead before pings":   func(c *Config) { c.PingInterval = time.Second },
		"max below min":       func(c *Config) { c.DeadAfterMax = 100 * time.Millisecond },
		"redial max below":    func(c *Config) { c.RedialMax = time.Millisecond },
		"negative max stream": func(c *Config) { c.MaxStreams = -2 },
	} {
		c := ok
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: got %v, want ErrInvalidConfig", name, err)
		}
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	d := Config{Identity: id, ListenAddr: "10.0.0.1:2380"}.withDefaults()
	if d.AdvertiseAddr != "10.0.0.1:2380" || d.PingInterval != DefaultPingInterval || d.MaxHandshakes != DefaultMaxHandshakes {
		t.Errorf("defaults: %+v", d)
	}
	if d := (Config{Identity: id, ListenAddr: "0.0.0.0:2380"}).withDefaults(); d.AdvertiseAddr != "" {
		t.Errorf("wildcard listen address advertised as %q", d.AdvertiseAddr)
	}
	if _, err := NewClusterSecret(nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("empty secret: %v", err)
	}
}

func TestClusterSecretIsDeterministic(t *testing.T) {
	// Two derivations from the same password admit each other's nodes.
	s1, err := NewClusterSecret([]byte("shared password"))
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := NewClusterSecret([]byte("shared password"))
	if !s1.caPub.Equal(s2.caPub) {
		t.Fatal("same password, different CA keys")
	}
	if !s1.weak {
		t.Error("a 15-byte secret is not flagged as weak")
	}
	id, _ := NewIdentity()
	cert, _ := leafCertificate(id, s1, time.Now())
	if _, err := verifyPeer(cert.Certificate, s2); err != nil {
		t.Fatalf("certificate from one derivation rejected by the other: %v", err)
	}
}

func TestLifecycle(t *testing.T) {
	id, _ := NewIdentity()
	n, err := New(Config{Identity: id, ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start: %v", err)
	}
	if err := n.SetTargets([]string{"no-port"}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad target: %v", err)
	}
	// The port is taken: Start fails with an error, not a panic.
	id2, _ := NewIdentity()
	busy, _ := New(Config{Identity: id2, ListenAddr: n.Addr()})
	if err := busy.Start(); err == nil {
		t.Fatal("Start on a busy port succeeded")
	}
	_ = busy.Close()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := n.Start(); !errors.Is(err, ErrStopped) {
		t.Fatalf("Start after Close: %v", err)
	}
	// A dial-only node has no address.
	id3, _ := NewIdentity()
	d, _ := New(Config{Identity: id3})
	if err := d.Start(); err != nil || d.Addr() != "" {
		t.Fatalf("dial-only: %v %q", err, d.Addr())
	}
	_ = d.Close()
}

func TestCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		var nodes []*testNode
		for range 3 {
			nodes = append(nodes, newTestNode(t))
		}
		for i, n := range nodes {
			var targets []string
			for j, m := range nodes {
				if i != j {
					targets = append(targets, m.Addr())
				}
			}
			_ = n.SetTargets(targets)
		}
		for i := range nodes {
			for j := range nodes {
				if i != j {
					linked(t, nodes[i], nodes[j])
				}
			}
		}
		s, err := nodes[0].OpenStream(nodes[1].PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = s.Write([]byte("open stream at close"))
		nodes[0].Send(nodes[2].PublicKey(), []byte("in flight at close"))
		for _, n := range nodes {
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			if got := len(n.Links()); got != 0 {
				t.Errorf("%d links after Close", got)
			}
		}
		for _, n := range nodes {
			if ups, downs := n.rec.count("up"), n.rec.count("down"); ups != downs {
				t.Errorf("%d ups, %d downs after Close", ups, downs)
			}
		}
	}()
	waitFor(t, 5*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestPublicKeyString(t *testing.T) {
	k := PublicKey{0xab, 0xcd, 1, 2, 3, 4, 5}
	if k.String() != "abcd01020304" || len(k.Hex()) != 64 {
		t.Fatalf("String %q, Hex %q", k.String(), k.Hex())
	}
	if !(PublicKey{1}).less(PublicKey{2}) || (PublicKey{2}).less(PublicKey{1}) || (PublicKey{1}).less(PublicKey{1}) {
		t.Fatal("less is not a strict order")
	}
}

// TestDuplicateInheritsHistory: a duplicate link that replaces a live one
// keeps what that link learnt about the peer (the flap penalty above all);
// otherwise the redial churn after a wrong dead verdict would reset the
// hysteresis and let the next verdict come as fast as the first.
func TestDuplicateInheritsHistory(t *testing.T) {
	a, b := newTestNode(t, patient), newTestNode(t, patient)
	connect(t, a, b)
	// The node with the smaller key wins duplicate resolution for the
	// links it dials; the nonce decides between two of them.
	small, large := a, b
	if b.PublicKey().less(a.PublicKey()) {
		small, large = b, a
	}
	setPenalty := func() {
		l := small.currentLink(large.PublicKey())
		l.mu.Lock()
		l.live.hist.penalty = 4
		l.mu.Unlock()
	}
	setPenalty()
	for try := 0; ; try++ {
		if try == 30 {
			t.Fatal("no duplicate replaced the link in 30 attempts")
		}
		before := small.currentLink(large.PublicKey())
		ups := small.rec.count("up")
		done := make(chan struct{})
		// dial runs a link it registers until the link is down.
		go func() { defer close(done); small.dial(large.Addr()) }()
		var after *link
		waitFor(t, 5*time.Second, "the attempt to end", func() bool {
			select {
			case <-done:
				return true // refused: the existing link ranked first
			default:
			}
			if small.rec.count("up") > ups {
				after = small.currentLink(large.PublicKey())
				return after != nil && after != before
			}
			return false
		})
		if after == nil {
			continue
		}
		after.mu.Lock()
		p := after.live.hist.penalty
		after.mu.Unlock()
		if p < 3.9 {
			t.Fatalf("replacing link has penalty %.2f, want the replaced link's 4", p)
		}
		return
	}
}
