package meshtransport

import (
	"errors"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	good := []Config{
		{ListenAddr: "127.0.0.1:0", Peers: []string{"10.0.0.1:2380", "[::1]:7"}},
		{ListenAddr: "0.0.0.0:2380", Password: []byte("s")},
		{ListenAddr: "10.0.0.1:2380", InsecureAllowAnyone: true},
		{ListenAddr: "[::1]:2380"},
		{ListenAddr: "localhost:2380"},
	}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	for name, c := range map[string]Config{
		"listen without port": {ListenAddr: "127.0.0.1"},
		"listen port range":   {ListenAddr: "127.0.0.1:70000"},
		"peer without port":   {Peers: []string{"10.0.0.1"}},
		"peer port zero":      {Peers: []string{"10.0.0.1:0"}},
		"peer without host":   {Peers: []string{":2380"}},
		"empty password":      {Password: []byte{}},
		"bad advertise":       {AdvertiseAddr: "x"},
		"negative interval":   {ProbeInterval: -time.Second},
		"negative failures":   {ProbeFailures: -1},
		"negative queue":      {QueueLen: -1},
		"negative timeout":    {SnapshotTimeout: -1},
		"negative transfer":   {MaxTransfer: -1},
		"ttl below refresh":   {RefreshInterval: time.Minute, EntryTTL: time.Second},
		"open without secret": {ListenAddr: "0.0.0.0:2380"},
		"any host, no secret": {ListenAddr: ":2380"},
		"a name, no secret":   {ListenAddr: "node1.example:2380"},
	} {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v, want ErrInvalidConfig", name, err)
		}
		if _, err := New(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: New = %v, want ErrInvalidConfig", name, err)
		}
	}
	if err := (Config{ListenAddr: "0.0.0.0:1"}).Validate(); !errors.Is(err, ErrInsecure) {
		t.Errorf("open listener without a secret: %v, want ErrInsecure", err)
	}
}

func TestConfigDefaultsCopySlices(t *testing.T) {
	pw := []byte("secret")
	c := Config{Password: pw, Peers: []string{"a:1"}}
	d := c.withDefaults()
	if d.ListenAddr != DefaultListenAddr || !*d.PeerDiscovery || d.ProbeInterval != DefaultProbeInterval ||
		d.EntryTTL != DefaultEntryTTL || d.MaxTransfer != DefaultMaxTransfer || d.Logger == nil {
		t.Fatalf("defaults not applied: %+v", d)
	}
	pw[0] = 'X'
	c.Peers[0] = "changed"
	if string(d.Password) != "secret" || d.Peers[0] != "a:1" {
		t.Fatal("withDefaults shares slices with the caller")
	}
}
