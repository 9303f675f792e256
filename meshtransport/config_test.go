package meshtransport

import (
	"errors"
	"net"
	"strconv"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	good := Config{ListenAddr: "127.0.0.1:0", Peers: []string{"10.0.0.1:2380", "[::1]:7"}, Password: []byte("s")}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, c := range map[string]Config{
		"listen without port": {ListenAddr: "127.0.0.1"},
		"listen bad port":     {ListenAddr: "127.0.0.1:http"},
		"listen port range":   {ListenAddr: "127.0.0.1:70000"},
		"peer without port":   {Peers: []string{"10.0.0.1"}},
		"peer port zero":      {Peers: []string{"10.0.0.1:0"}},
		"peer without host":   {Peers: []string{":2380"}},
		"empty password":      {Password: []byte{}},
		"negative interval":   {ProbeInterval: -time.Second},
		"negative failures":   {ProbeFailures: -1},
		"negative queue":      {QueueLen: -1},
		"negative timeout":    {SnapshotTimeout: -1},
		"negative gossip":     {GossipInterval: -1},
	} {
		err := c.Validate()
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v, want ErrInvalidConfig", name, err)
		}
		if _, err := New(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: New = %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	pw := []byte("secret")
	c := Config{Password: pw, Peers: []string{"a:1"}}
	d := c.withDefaults()
	if d.ListenAddr != DefaultListenAddr || !*d.PeerDiscovery || d.ProbeInterval != DefaultProbeInterval ||
		d.ProbeFailures != DefaultProbeFailures || d.QueueLen != DefaultQueueLen ||
		d.SnapshotTimeout != DefaultSnapshotTimeout || d.GossipInterval != DefaultGossipInterval || d.Logger == nil {
		t.Fatalf("defaults not applied: %+v", d)
	}
	pw[0] = 'X'
	c.Peers[0] = "changed"
	if string(d.Password) != "secret" || d.Peers[0] != "a:1" {
		t.Fatal("withDefaults shares slices with the caller")
	}
	off := false
	if d := (Config{PeerDiscovery: &off}).withDefaults(); *d.PeerDiscovery {
		t.Fatal("explicit PeerDiscovery=false overridden")
	}
}

func TestStartBindFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	tr, err := New(Config{ListenAddr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Start(); !errors.Is(err, ErrBind) {
		t.Fatalf("Start on a taken port = %v, want ErrBind", err)
	}
	if _, p, _ := net.SplitHostPort(tr.Addr()); p != strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) {
		t.Errorf("Addr = %s", tr.Addr())
	}
}

func TestNewPeerNamesAreRandom(t *testing.T) {
	a, err := New(Config{ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if a.PeerName() == b.PeerName() {
		t.Fatalf("two transports share peer name %s", a.PeerName())
	}
	if a.meta.own().Incarnation == b.meta.own().Incarnation {
		t.Fatal("two transports share an incarnation")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); !errors.Is(err, ErrStopped) {
		t.Fatalf("Start after Close = %v, want ErrStopped", err)
	}
	_ = b.Close()
}
