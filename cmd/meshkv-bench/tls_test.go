package main

import (
	"io"
	"testing"

	"github.com/meshkv/meshkv/internal/bench"
	"github.com/meshkv/meshkv/internal/tlsconfig/tlstest"
)

func TestTLSAndUserFlags(t *testing.T) {
	p := tlstest.New(t, "a")
	cert, key, _ := p.Client(t, "alice", "alice")
	o, err := parseFlags([]string{"put", "--endpoints", "https://127.0.0.1:1", "--cacert", p.CAFile(),
		"--cert", cert, "--key", key, "--user", "alice:pw:with:colons", "--quiet"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.client.TLS == nil || o.client.TLS.RootCAs == nil || len(o.client.TLS.Certificates) != 1 {
		t.Fatalf("TLS config %+v", o.client.TLS)
	}
	if o.client.Username != "alice" || o.client.Password != "pw:with:colons" {
		t.Fatalf("user %q password %q", o.client.Username, o.client.Password)
	}
	o, err = parseFlags([]string{"get", "--endpoints", "unixs://s", "--user", "bob", "--password", "x", "--quiet"}, io.Discard)
	if err != nil || o.client.TLS == nil || o.client.Username != "bob" || o.client.Password != "x" {
		t.Fatalf("unixs endpoint and --password: %+v, %v", o, err)
	}
	o, err = parseFlags([]string{"connect", "--endpoints", "127.0.0.1:1,127.0.0.1:2", "--insecure-skip-tls-verify", "--quiet"}, io.Discard)
	if err != nil || o.cfg.Workload != bench.Connect || len(o.cfg.Endpoints) != 2 || o.cfg.TLS == nil || !o.cfg.TLS.InsecureSkipVerify {
		t.Fatalf("connect: %+v, %v", o, err)
	}
	if o, err := parseFlags([]string{"put", "--endpoints", "127.0.0.1:1", "--quiet"}, io.Discard); err != nil || o.client.TLS != nil {
		t.Fatalf("plaintext: %+v, %v", o, err)
	}
	for _, args := range [][]string{
		{"connect", "--user", "root:x"},
		{"put", "--user", "a:b", "--password", "c"},
		{"put", "--cert", cert},
		{"put", "--cacert", "/nonexistent"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted bad input", args)
		}
	}
}
