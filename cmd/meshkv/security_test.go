package main

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/tlsconfig/tlstest"
)

func TestSecurityFlags(t *testing.T) {
	p := tlstest.New(t, "ca")
	cert, key := p.Server(t, "server")
	log := slog.New(slog.DiscardHandler)
	o, err := parseFlags([]string{"--listen-client-urls", "https://127.0.0.1:2379,http://127.0.0.1:2379",
		"--cert-file", cert, "--key-file", key, "--trusted-ca-file", p.CAFile(), "--client-cert-auth",
		"--tls-min-version", "TLS1.3", "--auth-token", "", "--auth-token-ttl", "60", "--bcrypt-cost", "12"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.security.apply(&o.cfg, log); err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.ClientTLS == nil || !c.ClientCertAuth || c.AuthToken != "none" || c.AuthTokenTTL != time.Minute || c.BcryptCost != 12 {
		t.Fatalf("config: TLS %v cert auth %v token %q ttl %v cost %d", c.ClientTLS != nil, c.ClientCertAuth, c.AuthToken, c.AuthTokenTTL, c.BcryptCost)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}

	// The environment and etcd's config file set them too.
	o, err = parseFlags(nil, []string{"ETCD_AUTH_TOKEN=jwt,sign-method=ES256,pub-key=/k.pub", "MESHKV_BCRYPT_COST=5", "ETCD_AUTO_TLS=true"})
	if err != nil {
		t.Fatal(err)
	}
	if o.security.authToken != "jwt,sign-method=ES256,pub-key=/k.pub" || o.security.bcryptCost != 5 || !o.security.tls.AutoTLS {
		t.Fatalf("from the environment: %+v", o.security)
	}
	file := writeFile(t, "tls.yaml", `
listen-client-urls: https://127.0.0.1:2379
client-transport-security:
  cert-file: `+cert+`
  key-file: `+key+`
  client-cert-auth: true
  trusted-ca-file: `+p.CAFile()+`
  crl-file: /etc/crl.pem
auth-token: simple
`)
	o, err = parseFlags([]string{"--config-file", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := o.security.tls
	if s.CertFile != cert || s.KeyFile != key || !s.ClientCertAuth || s.TrustedCAFile != p.CAFile() || s.CRLFile != "/etc/crl.pem" {
		t.Fatalf("from the config file: %+v", s)
	}

	for name, args := range map[string][]string{
		"client cert auth without a CA": {"--listen-client-urls", "https://127.0.0.1:1", "--cert-file", cert, "--key-file", key, "--client-cert-auth"},
		"cert without key":              {"--cert-file", cert},
		"bad TLS version":               {"--auto-tls", "--tls-min-version", "TLS1.1"},
		"unknown cipher suite":          {"--auto-tls", "--cipher-suites", "TLS_NOPE"},
		"missing certificate file":      {"--listen-client-urls", "https://127.0.0.1:1", "--cert-file", "/absent.crt", "--key-file", "/absent.key"},
		"zero token TTL":                {"--auth-token-ttl", "0"},
	} {
		o, err := parseFlags(args, nil)
		if err == nil {
			err = o.security.apply(&o.cfg, log)
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// An https:// URL needs a certificate.
	o, err = parseFlags([]string{"--listen-client-urls", "https://127.0.0.1:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.security.apply(&o.cfg, log); err != nil {
		t.Fatal(err)
	}
	if err := o.cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--cert-file") {
		t.Fatalf("https without a certificate: %v", err)
	}
}

func TestHelpListsSecurityFlags(t *testing.T) {
	var out strings.Builder
	if code := run([]string{"--help"}, nil, &out, io.Discard); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, f := range []string{"cert-file", "key-file", "trusted-ca-file", "client-cert-auth", "auto-tls", "client-crl-file",
		"tls-min-version", "tls-max-version", "cipher-suites", "auth-token", "auth-token-ttl", "bcrypt-cost", "self-signed-cert-validity"} {
		if !strings.Contains(out.String(), "  --"+f+" ") && !strings.Contains(out.String(), "  --"+f+"\n") {
			t.Errorf("--help does not list --%s as meshkv's own", f)
		}
	}
}
