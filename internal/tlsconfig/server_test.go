package tlsconfig

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/tlsconfig/tlstest"
)

// handshake runs one TLS handshake between a client configured by c and
// the server, over loopback TCP, and returns both sides' states.
func handshake(t *testing.T, server *tls.Config, c *tls.Config) (srv, cli tls.ConnectionState, srvErr, cliErr error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := l.Accept()
		if err != nil {
			srvErr = err
			return
		}
		defer conn.Close()
		sc := tls.Server(conn, server)
		srvErr = sc.HandshakeContext(ctx)
		srv = sc.ConnectionState()
		if srvErr == nil {
			// In TLS 1.3 the server verifies the client after the
			// client is done; a read makes the client see the verdict.
			_, _ = sc.Write([]byte{1})
		}
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cc := tls.Client(conn, c)
	cliErr = cc.HandshakeContext(ctx)
	cli = cc.ConnectionState()
	if cliErr == nil {
		var one [1]byte
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := cc.Read(one[:]); err != nil {
			cliErr = err
		}
	}
	<-done
	return srv, cli, srvErr, cliErr
}

func client(t *testing.T, o ClientOptions) *tls.Config {
	t.Helper()
	if o.ServerName == "" && !o.InsecureSkipVerify {
		o.ServerName = "localhost"
	}
	c, err := Client(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newServer(t *testing.T, o Options) *Server {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestServerOnly(t *testing.T) {
	p := tlstest.New(t, "a")
	cert, key := p.Server(t, "server")
	s := newServer(t, Options{CertFile: cert, KeyFile: key})
	srv, cli, se, ce := handshake(t, s.Config(), client(t, ClientOptions{CAFile: p.CAFile()}))
	if se != nil || ce != nil {
		t.Fatalf("handshake: server %v, client %v", se, ce)
	}
	if cli.NegotiatedProtocol != "h2" || srv.Version < tls.VersionTLS12 {
		t.Fatalf("ALPN %q, version %x", cli.NegotiatedProtocol, srv.Version)
	}
	if len(srv.PeerCertificates) != 0 {
		t.Fatal("server asked for a client certificate without a CA")
	}
	// A client trusting another CA refuses the server.
	other := tlstest.New(t, "b")
	if _, _, _, ce := handshake(t, s.Config(), client(t, ClientOptions{CAFile: other.CAFile()})); ce == nil {
		t.Fatal("client trusted a server signed by another CA")
	}
}

func TestMutualTLS(t *testing.T) {
	p := tlstest.New(t, "a")
	cert, key := p.Server(t, "server")
	aliceCert, aliceKey, _ := p.Client(t, "alice", "alice")
	other := tlstest.New(t, "b")
	eveCert, eveKey, _ := other.Client(t, "eve", "root")
	for _, o := range []Options{
		{CertFile: cert, KeyFile: key, TrustedCAFile: p.CAFile()}, // a CA file alone requires certificates, as etcd
		{CertFile: cert, KeyFile: key, TrustedCAFile: p.CAFile(), ClientCertAuth: true},
	} {
		s := newServer(t, o)
		srv, _, se, ce := handshake(t, s.Config(), client(t, ClientOptions{CAFile: p.CAFile(), CertFile: aliceCert, KeyFile: aliceKey}))
		if se != nil || ce != nil {
			t.Fatalf("handshake: server %v, client %v", se, ce)
		}
		if len(srv.VerifiedChains) == 0 || srv.VerifiedChains[0][0].Subject.CommonName != "alice" {
			t.Fatalf("verified chains %v", srv.VerifiedChains)
		}
		if _, _, se, _ := handshake(t, s.Config(), client(t, ClientOptions{CAFile: p.CAFile()})); se == nil {
			t.Fatal("server accepted a client without a certificate")
		}
		if _, _, se, _ := handshake(t, s.Config(), client(t, ClientOptions{CAFile: p.CAFile(), CertFile: eveCert, KeyFile: eveKey})); se == nil {
			t.Fatal("server accepted a client certificate from another CA")
		}
	}
}

func TestCRL(t *testing.T) {
	p := tlstest.New(t, "a")
	cert, key := p.Server(t, "server")
	aliceCert, aliceKey, aliceSerial := p.Client(t, "alice", "alice")
	bobCert, bobKey, _ := p.Client(t, "bob", "bob")
	crl := p.CRL(t, "list", aliceSerial)
	s := newServer(t, Options{CertFile: cert, KeyFile: key, TrustedCAFile: p.CAFile(), CRLFile: crl})
	alice := client(t, ClientOptions{CAFile: p.CAFile(), CertFile: aliceCert, KeyFile: aliceKey})
	bob := client(t, ClientOptions{CAFile: p.CAFile(), CertFile: bobCert, KeyFile: bobKey})
	if _, _, se, _ := handshake(t, s.Config(), alice); se == nil {
		t.Fatal("revoked certificate accepted")
	}
	if _, _, se, ce := handshake(t, s.Config(), bob); se != nil || ce != nil {
		t.Fatalf("bob: %v, %v", se, ce)
	}
	// A new list (DER this time) takes effect at the next handshake.
	der := p.CRLDER(t)
	if err := os.WriteFile(crl, der, 0o600); err != nil {
		t.Fatal(err)
	}
	touchLater(t, crl)
	if _, _, se, ce := handshake(t, s.Config(), alice); se != nil || ce != nil {
		t.Fatalf("alice after her serial left the list: %v, %v", se, ce)
	}
	// An unreadable list refuses everyone.
	if err := os.WriteFile(crl, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	touchLater(t, crl)
	if _, _, se, _ := handshake(t, s.Config(), bob); se == nil {
		t.Fatal("handshake succeeded with an unreadable CRL")
	}
}

// touchLater moves a file's modification time forward, so a rewrite within
// the file system's timestamp granularity still counts as a change.
func touchLater(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	later := fi.ModTime().Add(time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
	touchLater(t, to)
}

func TestCertificateReload(t *testing.T) {
	p := tlstest.New(t, "a")
	c1, k1 := p.Server(t, "one")
	c2, k2 := p.Server(t, "two")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	copyFile(t, c1, cert)
	copyFile(t, k1, key)
	s := newServer(t, Options{CertFile: cert, KeyFile: key})
	cfg := client(t, ClientOptions{CAFile: p.CAFile()})
	served := func() string {
		t.Helper()
		_, cli, se, ce := handshake(t, s.Config(), cfg)
		if se != nil || ce != nil {
			t.Fatalf("handshake: %v, %v", se, ce)
		}
		return cli.PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "one" {
		t.Fatalf("serving %q, want one", got)
	}
	// Half replaced: the new certificate with the old key does not load;
	// the old pair stays in use.
	copyFile(t, c2, cert)
	if got := served(); got != "one" {
		t.Fatalf("half replaced: serving %q, want one", got)
	}
	copyFile(t, k2, key)
	if got := served(); got != "two" {
		t.Fatalf("replaced: serving %q, want two", got)
	}
	// Removed files keep the last good pair too.
	if err := os.Remove(cert); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != "two" {
		t.Fatalf("removed: serving %q, want two", got)
	}
}

func TestCAReload(t *testing.T) {
	a, b := tlstest.New(t, "a"), tlstest.New(t, "b")
	cert, key := a.Server(t, "server")
	bobCert, bobKey, _ := b.Client(t, "bob", "bob")
	ca := filepath.Join(t.TempDir(), "ca.crt")
	copyFile(t, a.CAFile(), ca)
	s := newServer(t, Options{CertFile: cert, KeyFile: key, TrustedCAFile: ca, ClientCertAuth: true})
	bob := client(t, ClientOptions{CAFile: a.CAFile(), CertFile: bobCert, KeyFile: bobKey})
	if _, _, se, _ := handshake(t, s.Config(), bob); se == nil {
		t.Fatal("client of an untrusted CA accepted")
	}
	copyFile(t, b.CAFile(), ca)
	if _, _, se, ce := handshake(t, s.Config(), bob); se != nil || ce != nil {
		t.Fatalf("after trusting its CA: %v, %v", se, ce)
	}
}

func TestVersionsAndSuites(t *testing.T) {
	p := tlstest.New(t, "a")
	cert, key := p.Server(t, "server")
	base := client(t, ClientOptions{CAFile: p.CAFile()})

	s13 := newServer(t, Options{CertFile: cert, KeyFile: key, MinVersion: "TLS1.3"})
	old := base.Clone()
	old.MaxVersion = tls.VersionTLS12
	if _, _, se, _ := handshake(t, s13.Config(), old); se == nil {
		t.Fatal("TLS 1.3 server accepted TLS 1.2")
	}
	s12 := newServer(t, Options{CertFile: cert, KeyFile: key, MaxVersion: "TLS1.2",
		CipherSuites: []string{"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"}})
	srv, _, se, ce := handshake(t, s12.Config(), base)
	if se != nil || ce != nil {
		t.Fatalf("handshake: %v, %v", se, ce)
	}
	if srv.Version != tls.VersionTLS12 || srv.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 {
		t.Fatalf("version %x suite %x", srv.Version, srv.CipherSuite)
	}
	gcm := base.Clone()
	gcm.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	gcm.MaxVersion = tls.VersionTLS12
	if _, _, se, _ := handshake(t, s12.Config(), gcm); se == nil {
		t.Fatal("server accepted a cipher suite it was not configured with")
	}
}

func TestAutoTLS(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newServer(t, Options{AutoTLS: true, Hosts: []string{"127.0.0.1:2379", "node.example:2379"},
		Now: func() time.Time { return now }, SelfSignedCertValidity: 48 * time.Hour})
	_, cli, se, ce := handshake(t, s.Config(), client(t, ClientOptions{InsecureSkipVerify: true}))
	if se != nil || ce != nil {
		t.Fatalf("handshake: %v, %v", se, ce)
	}
	leaf := cli.PeerCertificates[0]
	if !slices.Equal(leaf.DNSNames, []string{"node.example"}) || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("SANs %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if !leaf.NotAfter.Equal(now.Add(48 * time.Hour)) {
		t.Fatalf("not after %v", leaf.NotAfter)
	}
	// Verifying clients refuse it.
	if _, _, _, ce := handshake(t, s.Config(), client(t, ClientOptions{ServerName: "node.example"})); ce == nil {
		t.Fatal("a verifying client accepted the self-signed certificate")
	}
}

func TestValidate(t *testing.T) {
	bad := []struct {
		o    Options
		want error
	}{
		{Options{CertFile: "c"}, ErrCertKeyPair},
		{Options{KeyFile: "k"}, ErrCertKeyPair},
		{Options{TrustedCAFile: "ca"}, ErrNoServerCert},
		{Options{CRLFile: "crl"}, ErrNoServerCert},
		{Options{AutoTLS: true, ClientCertAuth: true}, ErrNoTrustedCA},
		{Options{AutoTLS: true, MinVersion: "TLS1.1"}, nil},
		{Options{AutoTLS: true, MaxVersion: "tls1.3"}, nil},
		{Options{AutoTLS: true, MinVersion: "TLS1.3", MaxVersion: "TLS1.2"}, nil},
		{Options{AutoTLS: true, MinVersion: "TLS1.3", CipherSuites: []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}}, nil},
		{Options{AutoTLS: true, CipherSuites: []string{"TLS_NOPE"}}, nil},
		{Options{AutoTLS: true, SelfSignedCertValidity: -1}, nil},
	}
	for _, c := range bad {
		err := c.o.Validate()
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("Validate(%+v) = %v, want %v", c.o, err, c.want)
		}
	}
	good := []Options{
		{},
		{AutoTLS: true},
		{CertFile: "c", KeyFile: "k", TrustedCAFile: "ca", ClientCertAuth: true, CRLFile: "x", MinVersion: "TLS1.2", MaxVersion: "TLS1.3",
			CipherSuites: []string{"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_RSA_WITH_RC4_128_SHA"}},
	}
	for _, o := range good {
		if err := o.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", o, err)
		}
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New without a certificate succeeded")
	}
	if _, err := New(Options{CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}); err == nil {
		t.Error("New with missing files succeeded")
	}
}

// TestAllowedHostnames admits only client certificates valid for an allowed
// name, as etcd's --client-cert-allowed-hostname.
func TestAllowedHostnames(t *testing.T) {
	p := tlstest.New(t, "a")
	cert, key := p.Server(t, "server")
	// Server certificates here are also valid for client authentication.
	okCert, okKey := p.Server(t, "ok", "client.example", "10.1.2.3")
	wildCert, wildKey := p.Server(t, "wild", "*.example")
	otherCert, otherKey := p.Server(t, "other", "other.test")
	bareCert, bareKey, _ := p.Client(t, "bare", "alice")
	s := newServer(t, Options{CertFile: cert, KeyFile: key, TrustedCAFile: p.CAFile(), ClientCertAuth: true,
		AllowedHostnames: []string{"client.example"}})
	for _, tc := range []struct {
		name       string
		cert, key  string
		wantRefuse bool
	}{
		{"san matches", okCert, okKey, false},
		{"wildcard covers it", wildCert, wildKey, false},
		{"other name", otherCert, otherKey, true},
		{"no san", bareCert, bareKey, true},
	} {
		c := client(t, ClientOptions{CAFile: p.CAFile(), CertFile: tc.cert, KeyFile: tc.key})
		_, _, se, _ := handshake(t, s.Config(), c)
		if (se != nil) != tc.wantRefuse {
			t.Errorf("%s: server error %v, want refused=%v", tc.name, se, tc.wantRefuse)
		}
	}
	// An IP address is a hostname too.
	s = newServer(t, Options{CertFile: cert, KeyFile: key, TrustedCAFile: p.CAFile(), ClientCertAuth: true,
		AllowedHostnames: []string{"nope.example", "10.1.2.3"}})
	c := client(t, ClientOptions{CAFile: p.CAFile(), CertFile: okCert, KeyFile: okKey})
	if _, _, se, ce := handshake(t, s.Config(), c); se != nil || ce != nil {
		t.Fatalf("IP SAN: %v, %v", se, ce)
	}
	if err := (Options{CertFile: cert, KeyFile: key, AllowedHostnames: []string{"x"}}).Validate(); err != ErrAllowedHostnameNoCA {
		t.Fatalf("allowed hostname without a CA: %v", err)
	}
}
