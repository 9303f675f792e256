package meshkv_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/tlsconfig"
	"github.com/meshkv/meshkv/internal/tlsconfig/tlstest"
)

// pkiFiles is a CA with a server certificate whose files live in their own
// directory (so that a test can replace them), and two client certificates.
type pkiFiles struct {
	pki                 *tlstest.PKI
	cert, key           string // the server's, in dir
	dir                 string
	rootCert, rootKey   string // CN root
	aliceCert, aliceKey string // CN alice
}

func newPKI(t *testing.T) *pkiFiles {
	t.Helper()
	p := &pkiFiles{pki: tlstest.New(t, "test"), dir: t.TempDir()}
	c, k := p.pki.Server(t, "one")
	p.cert, p.key = filepath.Join(p.dir, "server.crt"), filepath.Join(p.dir, "server.key")
	copyInto(t, c, p.cert)
	copyInto(t, k, p.key)
	p.rootCert, p.rootKey, _ = p.pki.Client(t, "root", "root")
	p.aliceCert, p.aliceKey, _ = p.pki.Client(t, "alice", "alice")
	return p
}

// copyInto replaces dst with src's content by a rename, as an operator
// rotating certificates does.
func copyInto(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func (p *pkiFiles) serverTLS(t *testing.T, mutual bool) *tls.Config {
	t.Helper()
	o := tlsconfig.Options{CertFile: p.cert, KeyFile: p.key}
	if mutual {
		o.TrustedCAFile, o.ClientCertAuth = p.pki.CAFile(), true
	}
	s, err := tlsconfig.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s.Config()
}

// tlsClient connects to endpoints with TLS, presenting cert if given, as
// user if given.
func (p *pkiFiles) tlsClient(t *testing.T, endpoints []string, cert, key, user, password string) *clientv3.Client {
	t.Helper()
	cfg, err := tlsconfig.Client(tlsconfig.ClientOptions{CAFile: p.pki.CAFile(), CertFile: cert, KeyFile: key, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: cfg, DialTimeout: 5 * time.Second,
		Username: user, Password: password, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func plainClient(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func shortCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClientTLSAndMutualTLS(t *testing.T) {
	p := newPKI(t)
	n := startNode(t, meshkv.Config{ListenClientURLs: []string{"https://127.0.0.1:0"}, ClientTLS: p.serverTLS(t, true)})
	eps := []string{"https://" + n.ClientAddrs()[0]}
	c := p.tlsClient(t, eps, p.aliceCert, p.aliceKey, "", "")
	if _, err := c.Put(shortCtx(t), "k", "v"); err != nil {
		t.Fatalf("put over mutual TLS: %v", err)
	}
	if _, err := p.tlsClient(t, eps, "", "", "", "").Put(shortCtx(t), "k", "v"); err == nil {
		t.Fatal("put without a client certificate succeeded")
	}
	if _, err := plainClient(t, n.ClientAddrs()).Put(shortCtx(t), "k", "v"); err == nil {
		t.Fatal("plaintext put on a TLS port succeeded")
	}
}

// TestHTTPAndHTTPSOnOnePort checks etcd's sharing of one address by an
// http:// and an https:// URL.
func TestHTTPAndHTTPSOnOnePort(t *testing.T) {
	p := newPKI(t)
	n := startNode(t, meshkv.Config{ListenClientURLs: []string{"http://127.0.0.1:0", "https://127.0.0.1:0"}, ClientTLS: p.serverTLS(t, false)})
	addrs := n.ClientAddrs()
	if len(addrs) != 1 {
		t.Fatalf("listeners %v, want one shared port", addrs)
	}
	if _, err := plainClient(t, addrs).Put(shortCtx(t), "k", "plain"); err != nil {
		t.Fatalf("plaintext: %v", err)
	}
	c := p.tlsClient(t, []string{"https://" + addrs[0]}, "", "", "", "")
	if _, err := c.Put(shortCtx(t), "k", "tls"); err != nil {
		t.Fatalf("TLS: %v", err)
	}
	ml, err := c.MemberList(shortCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http://" + addrs[0], "https://" + addrs[0]}
	if got := ml.Members[0].ClientURLs; !slices.Equal(got, want) {
		t.Fatalf("advertised %v, want %v", got, want)
	}
}

func TestUnixSockets(t *testing.T) {
	p := newPKI(t)
	dir, err := os.MkdirTemp("", "mkv") // socket paths are limited to about 100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	plain, secure := filepath.Join(dir, "c.sock"), filepath.Join(dir, "s.sock")
	// clientv3 verifies a unixs:// server by the socket file's name.
	cert, key := p.pki.Server(t, "unix", "s.sock")
	stls, err := tlsconfig.New(tlsconfig.Options{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, meshkv.Config{ListenClientURLs: []string{"unix://" + plain, "unixs://" + secure}, ClientTLS: stls.Config()})
	if _, err := plainClient(t, []string{"unix://" + plain}).Put(shortCtx(t), "k", "v"); err != nil {
		t.Fatalf("unix: %v", err)
	}
	cfg, err := tlsconfig.Client(tlsconfig.ClientOptions{CAFile: p.pki.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{"unixs://" + secure}, TLS: cfg, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Get(shortCtx(t), "k"); err != nil {
		t.Fatalf("unixs: %v", err)
	}
	if got := n.ClientAddrs(); !slices.Equal(got, []string{plain, secure}) {
		t.Fatalf("ClientAddrs %v", got)
	}
}

// servedCN returns the common name of the certificate a fresh TLS
// handshake with addr gets.
func servedCN(t *testing.T, p *pkiFiles, addr string) string {
	t.Helper()
	cfg, err := tlsconfig.Client(tlsconfig.ClientOptions{CAFile: p.pki.CAFile(), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestCertificateReloadUnderLoad replaces the server's certificate files
// while a client keeps working: new handshakes get the new certificate, the
// running client's connection goes on.
func TestCertificateReloadUnderLoad(t *testing.T) {
	p := newPKI(t)
	n := startNode(t, meshkv.Config{ListenClientURLs: []string{"https://127.0.0.1:0"}, ClientTLS: p.serverTLS(t, false)})
	addr := n.ClientAddrs()[0]
	running := p.tlsClient(t, []string{"https://" + addr}, "", "", "", "")
	if _, err := running.Put(shortCtx(t), "k", "0"); err != nil {
		t.Fatal(err)
	}
	if cn := servedCN(t, p, addr); cn != "one" {
		t.Fatalf("serving %q, want one", cn)
	}
	two, twoKey := p.pki.Server(t, "two")
	copyInto(t, two, p.cert)
	copyInto(t, twoKey, p.key)
	if cn := servedCN(t, p, addr); cn != "two" {
		t.Fatalf("after replacing the files: serving %q, want two", cn)
	}
	for i := range 20 {
		if _, err := running.Put(shortCtx(t), "k", strings.Repeat("x", i)); err != nil {
			t.Fatalf("running client after the reload: %v", err)
		}
	}
	if _, err := p.tlsClient(t, []string{"https://" + addr}, "", "", "", "").Get(shortCtx(t), "k"); err != nil {
		t.Fatalf("new client after the reload: %v", err)
	}
}

// TestClientCertAuthUsers checks that with ClientCertAuth a certificate's
// common name is the user of requests without a token, that a token wins,
// and that the in-process client acts as root.
func TestClientCertAuthUsers(t *testing.T) {
	p := newPKI(t)
	n := startNode(t, meshkv.Config{ListenClientURLs: []string{"https://127.0.0.1:0"}, ClientTLS: p.serverTLS(t, true),
		ClientCertAuth: true, BcryptCost: 4})
	app := n.Client()
	ctx := shortCtx(t)
	for _, step := range []func() error{
		func() error { _, err := app.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := app.UserGrantRole(ctx, "root", "root"); return err },
		func() error {
			_, err := app.UserAddWithOptions(ctx, "alice", "", &clientv3.UserAddOptions{NoPassword: true})
			return err
		},
		func() error { _, err := app.RoleAdd(ctx, "a"); return err },
		func() error {
			_, err := app.RoleGrantPermission(ctx, "a", "a/", clientv3.GetPrefixRangeEnd("a/"), clientv3.PermissionType(2))
			return err
		},
		func() error { _, err := app.UserGrantRole(ctx, "alice", "a"); return err },
		func() error { _, err := app.AuthEnable(ctx); return err },
		func() error { _, err := app.Put(ctx, "app-owned", "1"); return err }, // still root
		func() error { _, err := app.UserList(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("setup through the in-process client: %v", err)
		}
	}
	eps := []string{"https://" + n.ClientAddrs()[0]}
	alice := p.tlsClient(t, eps, p.aliceCert, p.aliceKey, "", "")
	if _, err := alice.Put(shortCtx(t), "a/1", "v"); err != nil {
		t.Fatalf("alice by certificate, her prefix: %v", err)
	}
	if _, err := alice.Put(shortCtx(t), "b/1", "v"); err == nil || !strings.Contains(err.Error(), rpctypes.ErrPermissionDenied.Error()) {
		t.Fatalf("alice by certificate, another prefix: %v", err)
	}
	asRoot := p.tlsClient(t, eps, p.aliceCert, p.aliceKey, "root", "rootpw")
	if _, err := asRoot.Put(shortCtx(t), "b/1", "v"); err != nil {
		t.Fatalf("alice's certificate with root's token: %v", err)
	}
	rootCert := p.tlsClient(t, eps, p.rootCert, p.rootKey, "", "")
	if _, err := rootCert.UserList(shortCtx(t)); err != nil {
		t.Fatalf("root by certificate: %v", err)
	}
}
