package clientmux

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// serving is a Mux serving a gRPC health service and an HTTP handler that
// echoes the protocol on one listener.
type serving struct {
	mux  *Mux
	addr string
	tls  chan credentials.AuthInfo // auth info gRPC calls saw
}

func serve(t *testing.T, l net.Listener, cfg Config, opts ...ListenerOptions) *serving {
	t.Helper()
	s := &serving{addr: l.Addr().String(), tls: make(chan credentials.AuthInfo, 16)}
	g := grpc.NewServer(grpc.Creds(Credentials(nil)), grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if p, ok := peer.FromContext(ctx); ok {
			select {
			case s.tls <- p.AuthInfo:
			default:
			}
		}
		return h(ctx, req)
	}))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	cfg.GRPC = g
	cfg.HTTP = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto+" "+r.URL.Path)
	})
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.mux = m
	done := make(chan error, 1)
	o := ListenerOptions{Plain: true}
	if len(opts) > 0 {
		o = opts[0]
	}
	go func() { done <- m.Serve(l, o) }()
	t.Cleanup(func() {
		g.Stop()
		_ = l.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		_ = m.Close()
	})
	return s
}

func localListener(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func grpcCheck(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health check: %v %v", r, err)
	}
}

func httpGet(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestPlainTextGRPCAndHTTP(t *testing.T) {
	s := serve(t, localListener(t), Config{})
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var wg sync.WaitGroup
	for range 8 { // interleaved
		wg.Go(func() { grpcCheck(t, conn) })
		wg.Go(func() {
			if got := httpGet(t, http.DefaultClient, "http://"+s.addr+"/x"); got != "HTTP/1.1 /x" {
				t.Errorf("HTTP/1 answer %q", got)
			}
		})
	}
	wg.Wait()
	if ai := <-s.tls; ai != nil && ai.AuthType() == "tls" {
		t.Errorf("plain-text gRPC saw TLS auth info %v", ai)
	}
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	l := tls.NewListener(localListener(t), &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
	s := serve(t, l, Config{})
	clientTLS := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	grpcCheck(t, conn)
	if ai := <-s.tls; ai == nil || ai.AuthType() != "tls" {
		t.Errorf("gRPC over TLS: auth info %v, want TLS (for client certificates)", ai)
	}

	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS.Clone(), ForceAttemptHTTP2: true}}
	if got := httpGet(t, h2, "https://"+s.addr+"/metrics"); got != "HTTP/2.0 /metrics" {
		t.Errorf("HTTP/2 over TLS answer %q", got)
	}
	h1cfg := clientTLS.Clone()
	h1cfg.NextProtos = []string{"http/1.1"}
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: h1cfg, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	if got := httpGet(t, h1, "https://"+s.addr+"/health"); got != "HTTP/1.1 /health" {
		t.Errorf("HTTP/1.1 over TLS answer %q", got)
	}
}

// TestSilentConnectionDropped checks that a connection that never says
// what it is is closed after the sniff timeout, and that Close does not
// wait for one.
func TestSilentConnectionDropped(t *testing.T) {
	s := serve(t, localListener(t), Config{SniffTimeout: 100 * time.Millisecond})
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("silent connection: read %v, want EOF (closed by the server)", err)
	}

	s2 := serve(t, localListener(t), Config{SniffTimeout: time.Hour})
	c2, err := net.Dial("tcp", s2.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Write([]byte("PRI * HT")); err != nil { // a prefix of the preface, then nothing
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the mux start reading it
	closed := make(chan error, 1)
	go func() { closed <- s2.mux.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a connection that is still being sniffed")
	}
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "clientmux test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestListenerModes: a listener admits plain text, TLS, or both on one port
// (told apart by the first byte), and refuses the other kind.
func TestListenerModes(t *testing.T) {
	cert, pool := selfSigned(t)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	clientTLS := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	plain := serve(t, localListener(t), Config{}, ListenerOptions{Plain: true})
	secure := serve(t, localListener(t), Config{}, ListenerOptions{TLS: serverTLS})
	both := serve(t, localListener(t), Config{}, ListenerOptions{TLS: serverTLS, Plain: true})
	call := func(addr string, creds credentials.TransportCredentials) (credentials.AuthInfo, error) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var p peer.Peer
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(false), grpc.Peer(&p))
		return p.AuthInfo, err
	}
	for _, c := range []struct {
		name string
		s    *serving
		tls  bool
		ok   bool
	}{
		{"plain on plain", plain, false, true},
		{"tls on plain", plain, true, false},
		{"tls on tls", secure, true, true},
		{"plain on tls", secure, false, false},
		{"plain on both", both, false, true},
		{"tls on both", both, true, true},
	} {
		creds := insecure.NewCredentials()
		if c.tls {
			creds = credentials.NewTLS(clientTLS.Clone())
		}
		_, err := call(c.s.addr, creds)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.name, err, c.ok)
			continue
		}
		if c.ok {
			ai := <-c.s.tls
			if got := ai != nil && ai.AuthType() == "tls"; got != c.tls {
				t.Errorf("%s: server saw auth info %v", c.name, ai)
			}
		}
	}
	// HTTP/1.1 and HTTP/2 over TLS on the shared port.
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS.Clone(), ForceAttemptHTTP2: true}}
	if got := httpGet(t, h2, "https://"+both.addr+"/health"); got != "HTTP/2.0 /health" {
		t.Errorf("HTTP/2 over TLS on a shared port: %q", got)
	}
	if got := httpGet(t, http.DefaultClient, "http://"+both.addr+"/health"); got != "HTTP/1.1 /health" {
		t.Errorf("HTTP/1.1 on a shared port: %q", got)
	}
}

// TestSilentClientDoesNotBlockOthers: a connection that sends nothing holds
// up only itself.
func TestSilentClientDoesNotBlockOthers(t *testing.T) {
	cert, pool := selfSigned(t)
	s := serve(t, localListener(t), Config{}, ListenerOptions{TLS: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}, Plain: true})
	silent, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	grpcCheck(t, conn)
}

// served returns how many connections the gRPC and the HTTP server of the
// first listener got.
func (s *serving) served() (grpcConns, httpConns int64) {
	s.mux.mu.Lock()
	defer s.mux.mu.Unlock()
	return s.mux.subs[0].accepted.Load(), s.mux.subs[1].accepted.Load()
}

// TestTLSNativeGRPC: a gRPC client over TLS (ALPN "h2" alone) is served by
// the gRPC server's own transport and sees its verified client
// certificate; a gRPC client that also offers HTTP/1.1 is served through
// the HTTP server, with the same peer information; HTTP clients over TLS
// reach the HTTP server with either protocol.
func TestTLSNativeGRPC(t *testing.T) {
	serverCert, pool := selfSigned(t)
	clientCert, clientPool := selfSignedClient(t, "alice")
	serverTLS := &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		NextProtos:   []string{"h2", "http/1.1"},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    clientPool,
	}
	s := serve(t, localListener(t), Config{}, ListenerOptions{TLS: serverTLS})
	clientTLS := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{clientCert}}

	check := func(name string, cfg *tls.Config, wantGRPC, wantHTTP int64) {
		t.Helper()
		conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		grpcCheck(t, conn)
		ai := <-s.tls
		info, ok := ai.(credentials.TLSInfo)
		if !ok {
			t.Fatalf("%s: auth info %T %v, want credentials.TLSInfo", name, ai, ai)
		}
		if len(info.State.VerifiedChains) == 0 || info.State.VerifiedChains[0][0].Subject.CommonName != "alice" {
			t.Errorf("%s: verified chains %v, want the client certificate of alice", name, info.State.VerifiedChains)
		}
		if info.SecurityLevel != credentials.PrivacyAndIntegrity {
			t.Errorf("%s: security level %v", name, info.SecurityLevel)
		}
		if g, h := s.served(); g != wantGRPC || h != wantHTTP {
			t.Errorf("%s: connections to gRPC %d, to HTTP %d; want %d, %d", name, g, h, wantGRPC, wantHTTP)
		}
	}
	check("gRPC client (h2 only)", clientTLS.Clone(), 1, 0)
	h1too := clientTLS.Clone()
	h1too.NextProtos = []string{"http/1.1"} // gRPC adds h2
	check("gRPC client offering HTTP/1.1 too", h1too, 1, 1)

	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS.Clone(), ForceAttemptHTTP2: true}}
	if got := httpGet(t, h2, "https://"+s.addr+"/metrics"); got != "HTTP/2.0 /metrics" {
		t.Errorf("HTTP/2 over TLS answer %q", got)
	}
	h1cfg := clientTLS.Clone()
	h1cfg.NextProtos = []string{"http/1.1"}
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: h1cfg, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	if got := httpGet(t, h1, "https://"+s.addr+"/health"); got != "HTTP/1.1 /health" {
		t.Errorf("HTTP/1.1 over TLS answer %q", got)
	}
	if g, _ := s.served(); g != 1 {
		t.Errorf("HTTP clients reached the gRPC server (%d connections)", g)
	}
}

// TestSilentTLSHandshakeDropped: a client that starts a TLS handshake and
// stalls is closed after the sniff timeout.
func TestSilentTLSHandshakeDropped(t *testing.T) {
	cert, _ := selfSigned(t)
	s := serve(t, localListener(t), Config{SniffTimeout: 100 * time.Millisecond},
		ListenerOptions{TLS: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}})
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{0x16, 0x03, 0x01}); err != nil { // the start of a ClientHello record
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("stalled handshake: %v, want the server to close the connection", err)
	}
}

// selfSignedClient returns a self-signed client certificate for cn and a
// pool that trusts it.
func selfSignedClient(t *testing.T, cn string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
