package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/meshkv/meshkv/internal/tlsconfig"
	"github.com/meshkv/meshkv/internal/tlsconfig/tlstest"
)

// jwtKeys writes an ECDSA P-256 key pair for JWT signing.
func jwtKeys(t *testing.T) (pub, priv string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pder, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	priv, pub = filepath.Join(dir, "jwt.key"), filepath.Join(dir, "jwt.pub")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// tlsFiles is a CA, a server certificate in its own directory, and client
// certificates for root and alice.
type tlsFiles struct {
	pki                *tlstest.PKI
	dir                string
	cert, key          string
	rootCert, rootKey  string
	aliceCert, aliceKy string
}

func newTLSFiles(t *testing.T) *tlsFiles {
	t.Helper()
	f := &tlsFiles{pki: tlstest.New(t, "e2e"), dir: t.TempDir()}
	c, k := f.pki.Server(t, "one")
	f.cert, f.key = filepath.Join(f.dir, "server.crt"), filepath.Join(f.dir, "server.key")
	replaceFile(t, c, f.cert)
	replaceFile(t, k, f.key)
	f.rootCert, f.rootKey, _ = f.pki.Client(t, "root", "root")
	f.aliceCert, f.aliceKy, _ = f.pki.Client(t, "alice", "alice")
	return f
}

func replaceFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst+".new", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dst+".new", dst); err != nil {
		t.Fatal(err)
	}
}

// startTLSPair starts etcd and meshkv serving clients on urlFmt (with %d for
// a free port, or a path) plus the TLS flags, and waits until each answers
// over TLS with the client options.
func startTLSPair(t *testing.T, co tlsconfig.ClientOptions, url func() string, flags ...string) (etcd, mkv *server) {
	t.Helper()
	start := func(kind, bin string, args []string, client string) *server {
		s := startProcessNoWait(t, kind, 0, bin, args...)
		s.clientURL, s.endpoint = client, client
		s.waitReadyTLS(t, co)
		return s
	}
	eu, pport := url(), freePort(t)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
	etcd = start("etcd", bins.etcd, append([]string{
		"--name", memberName, "--data-dir", t.TempDir(),
		"--listen-client-urls", eu, "--advertise-client-urls", eu,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", memberName + "=" + peer,
		"--unsafe-no-fsync", "--log-level", "error"}, flags...), eu)
	mu := url()
	mkv = start("meshkv", bins.meshkv, append([]string{
		"--name", memberName, "--listen-client-urls", mu, "--advertise-client-urls", mu,
		"--mesh-listen", "127.0.0.1:" + strconv.Itoa(freePort(t)), "--log-level", "warn"}, flags...), mu)
	return etcd, mkv
}

// waitReadyTLS polls until the server answers a Get over TLS.
func (s *server) waitReadyTLS(t *testing.T, co tlsconfig.ClientOptions) {
	t.Helper()
	cfg, err := tlsconfig.Client(co)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			t.Fatalf("%s exited while starting (%v):\n%s", s.kind, s.waitErr, tail(s.out.String(), 4000))
		default:
		}
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.endpoint}, TLS: cfg, DialTimeout: time.Second, Logger: zap.NewNop()})
		if err == nil {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			_, err = c.Get(ctx, "ready?")
			cancel()
			c.Close()
		}
		if lastErr = err; err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // polling a process we do not control
	}
	t.Fatalf("%s not ready after 30s: %v\n%s", s.kind, lastErr, tail(s.out.String(), 4000))
}

func httpsURL(t *testing.T) func() string {
	return func() string { return fmt.Sprintf("https://127.0.0.1:%d", freePort(t)) }
}

// TestTLSAndClientCertAuth serves both servers over mutual TLS with
// --client-cert-auth and compares etcdctl's view, users known by their
// certificates' common names included.
func TestTLSAndClientCertAuth(t *testing.T) {
	f := newTLSFiles(t)
	etcd, mkv := startTLSPair(t,
		tlsconfig.ClientOptions{CAFile: f.pki.CAFile(), CertFile: f.rootCert, KeyFile: f.rootKey, ServerName: "localhost"},
		httpsURL(t),
		"--cert-file", f.cert, "--key-file", f.key, "--trusted-ca-file", f.pki.CAFile(), "--client-cert-auth")
	ca := "--cacert=" + f.pki.CAFile()
	asRoot := []string{ca, "--cert=" + f.rootCert, "--key=" + f.rootKey}
	asAlice := []string{ca, "--cert=" + f.aliceCert, "--key=" + f.aliceKy}
	with := func(who []string, args ...string) step { return cmd(append(append([]string{}, who...), args...)...) }
	compareSteps(t, etcd, mkv, []step{
		with(asRoot, "put", "k", "v").expecting("OK"),
		with([]string{ca}, "get", "k").expecting("Error"), // no client certificate
		cmd("get", "k").expecting("Error"),                // plaintext
		with(asRoot, "user", "add", "root", "--no-password"),
		with(asRoot, "user", "grant-role", "root", "root"),
		with(asRoot, "user", "add", "alice", "--no-password"),
		with(asRoot, "role", "add", "a"),
		with(asRoot, "role", "grant-permission", "a", "readwrite", "--prefix", "a/"),
		with(asRoot, "user", "grant-role", "alice", "a"),
		with(asRoot, "auth", "enable").expecting("Authentication Enabled"),
		with(asAlice, "put", "a/1", "x").expecting("OK"),
		with(asAlice, "put", "b/1", "x").expecting("permission denied"),
		with(asAlice, "user", "list").expecting("permission denied"),
		with(asRoot, "user", "list").expecting("alice"),
		with(append(asAlice, "--user=root:pw"), "get", "k").expecting("password was given for no password user"),
		with(asRoot, "auth", "disable").expecting("Authentication Disabled"),
	})
}

// TestUnixSockets serves both servers on unix sockets, plaintext and TLS.
func TestUnixSockets(t *testing.T) {
	f := newTLSFiles(t)
	dir, err := os.MkdirTemp("", "e2e") // socket paths must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := 0
	sock := func(scheme string) func() string {
		return func() string {
			n++
			return fmt.Sprintf("%s://%s/%d.sock", scheme, dir, n)
		}
	}
	// Clients verify a unixs:// server by the socket file's name.
	cert, key := f.pki.Server(t, "unix", "1.sock", "2.sock")
	etcd, mkv := startTLSPair(t, tlsconfig.ClientOptions{CAFile: f.pki.CAFile()}, sock("unixs"),
		"--cert-file", cert, "--key-file", key)
	compareSteps(t, etcd, mkv, []step{
		cmd("--cacert="+f.pki.CAFile(), "put", "k", "v").expecting("OK"),
		cmd("--cacert="+f.pki.CAFile(), "get", "k").expecting("v"),
	})
}

// TestCertificateReload replaces both servers' certificate files while a
// client stays connected: new handshakes see the new certificate (meshkv
// like etcd) and the connected client keeps working.
func TestCertificateReload(t *testing.T) {
	f := newTLSFiles(t)
	co := tlsconfig.ClientOptions{CAFile: f.pki.CAFile(), ServerName: "localhost"}
	etcd, mkv := startTLSPair(t, co, httpsURL(t), "--cert-file", f.cert, "--key-file", f.key)
	cfg, err := tlsconfig.Client(co)
	if err != nil {
		t.Fatal(err)
	}
	clients := map[*server]*clientv3.Client{}
	for _, s := range []*server{etcd, mkv} {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.endpoint}, TLS: cfg, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[s] = c
		if _, err := c.Put(t.Context(), "k", "before"); err != nil {
			t.Fatalf("%s: %v", s.kind, err)
		}
		if cn := servedCN(t, s, cfg); cn != "one" {
			t.Fatalf("%s serves %q before the swap", s.kind, cn)
		}
	}
	two, twoKey := f.pki.Server(t, "two")
	replaceFile(t, two, f.cert)
	replaceFile(t, twoKey, f.key)
	for s, c := range clients {
		if cn := servedCN(t, s, cfg); cn != "two" {
			t.Errorf("%s serves %q after the swap, want two", s.kind, cn)
		}
		if _, err := c.Put(t.Context(), "k", "after"); err != nil {
			t.Errorf("%s: connected client after the swap: %v", s.kind, err)
		}
	}
}

// servedCN returns the common name of the certificate a fresh handshake
// with the server gets.
func servedCN(t *testing.T, s *server, cfg *tls.Config) string {
	t.Helper()
	addr := s.endpoint[len("https://"):]
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("%s: handshake: %v", s.kind, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}
