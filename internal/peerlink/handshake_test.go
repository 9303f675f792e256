package peerlink

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
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHandshakeSameSecret(t *testing.T) {
	a, b := newTestNode(t), newTestNode(t)
	connect(t, a, b)
	la, lb := a.Links(), b.Links()
	if len(la) != 1 || len(lb) != 1 {
		t.Fatalf("links: a %d, b %d, want 1 each", len(la), len(lb))
	}
	if la[0].Key != b.PublicKey() || !la[0].Dialled || lb[0].Key != a.PublicKey() || lb[0].Dialled {
		t.Fatalf("link info: a %+v, b %+v", la[0].PeerInfo, lb[0].PeerInfo)
	}
	if lb[0].AdvertiseAddr != a.Addr() {
		t.Errorf("b sees a advertising %q, want %q", lb[0].AdvertiseAddr, a.Addr())
	}
	if a.Stats().HandshakesOK != 1 || b.Stats().HandshakesOK != 1 {
		t.Errorf("handshakes ok: a %d, b %d", a.Stats().HandshakesOK, b.Stats().HandshakesOK)
	}
}

// failures waits until n counted a handshake failure for reason.
func failures(t *testing.T, n *testNode, reason string) {
	t.Helper()
	waitFor(t, 10*time.Second, "handshake failure "+reason, func() bool {
		return n.Stats().HandshakeFailures[reason] > 0
	})
}

func TestHandshakeWrongSecret(t *testing.T) {
	var logs logCapture
	a := newTestNode(t)
	b := newTestNode(t, func(c *Config) { c.ClusterSecret = otherSecret(); c.Logger = logs.logger(t) })
	if err := a.SetTargets([]string{b.Addr()}); err != nil {
		t.Fatal(err)
	}
	failures(t, b, "certificate")
	failures(t, a, "certificate")
	if len(a.Links())+len(b.Links()) != 0 || a.rec.count("up")+b.rec.count("up") != 0 {
		t.Fatal("a link came up between different secrets")
	}
	waitFor(t, 5*time.Second, "warning with the peer's address", func() bool {
		return logs.contains("level=WARN") && logs.contains("handshake failed") && logs.contains("127.0.0.1")
	})
}

// rawTLS runs a TLS client handshake with cert (nil: none) against addr
// and then reads, returning the first error.
func rawTLS(t *testing.T, addr string, certs []tls.Certificate) error {
	t.Helper()
	c := dialRaw(t, "", addr)
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true,
		NextProtos:         []string{alpn},
		Certificates:       certs,
	}
	tc := tls.Client(c, cfg)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.HandshakeContext(context.Background()); err != nil {
		return err
	}
	_, err := io.ReadAll(tc)
	return err
}

func TestHandshakeRejectsCertificates(t *testing.T) {
	id, _ := NewIdentity()
	selfSigned, err := leafCertificate(id, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := leafCertificate(id, otherSecret(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ours, err := leafCertificate(id, testSecret(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	chain := ours
	chain.Certificate = append(chain.Certificate, ours.Certificate[0])
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "ec"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	ecDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey.PublicKey, ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ecCert := tls.Certificate{Certificate: [][]byte{ecDER}, PrivateKey: ecKey}

	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no certificate", nil},
		{"self-signed, not by the cluster CA", []tls.Certificate{selfSigned}},
		{"signed by another cluster's CA", []tls.Certificate{foreign}},
		{"chain of two", []tls.Certificate{chain}},
		{"ECDSA key", []tls.Certificate{ecCert}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNode(t)
			if err := rawTLS(t, n.Addr(), tc.certs); err == nil {
				t.Fatal("server accepted the client")
			}
			failures(t, n, "certificate")
			if n.Stats().HandshakesOK != 0 {
				t.Fatal("handshake counted as ok")
			}
		})
	}
	// Control: the correct certificate passes TLS (the raw client then
	// stalls in the Hello, which is fine).
	t.Run("control", func(t *testing.T) {
		n := newTestNode(t)
		c := dialRaw(t, "", n.Addr())
		tc := tls.Client(c, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
			NextProtos: []string{alpn}, Certificates: []tls.Certificate{ours}})
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		var hdr [headerLen]byte
		if _, err := io.ReadFull(tc, hdr[:]); err != nil || hdr[0] != recHello {
			t.Fatalf("want the server's HELLO, got %v %v", hdr, err)
		}
	})
}

func TestVerifyPeer(t *testing.T) {
	id, _ := NewIdentity()
	ours, _ := leafCertificate(id, testSecret(), time.Now())
	self, _ := leafCertificate(id, nil, time.Now())
	if k, err := verifyPeer(ours.Certificate, testSecret()); err != nil || k != id.PublicKey() {
		t.Fatalf("own cluster certificate: %v, %v", k, err)
	}
	if k, err := verifyPeer(self.Certificate, nil); err != nil || k != id.PublicKey() {
		t.Fatalf("insecure mode: %v, %v", k, err)
	}
	for name, raw := range map[string][][]byte{
		"none":       nil,
		"two":        {ours.Certificate[0], ours.Certificate[0]},
		"garbage":    {[]byte("not a certificate")},
		"huge":       {make([]byte, maxCertSize+1)},
		"not signed": {self.Certificate[0]},
	} {
		if _, err := verifyPeer(raw, testSecret()); !errors.Is(err, errBadCertificate) {
			t.Errorf("%s: got %v, want errBadCertificate", name, err)
		}
	}
	// A flipped bit in the signed part breaks the CA signature.
	bad := append([]byte(nil), ours.Certificate[0]...)
	cert, _ := x509.ParseCertificate(bad)
	i := strings.Index(string(bad), string(cert.RawSubject))
	bad[i+len(cert.RawSubject)-1] ^= 1
	if _, err := verifyPeer([][]byte{bad}, testSecret()); err == nil {
		t.Error("tampered certificate accepted")
	}
}

func TestHandshakeGarbage(t *testing.T) {
	n := newTestNode(t)
	c := dialRaw(t, "", n.Addr())
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil && !isReset(err) {
		t.Fatalf("read: %v", err)
	}
	failures(t, n, "not-tls")
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || errors.Is(err, net.ErrClosed))
}

func TestHandshakeSlowloris(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	c := dialRaw(t, "", n.Addr())
	start := time.Now()
	closed := make(chan error, 1)
	go func() {
		// A TLS record header announcing a ClientHello, then one byte at a time.
		msg := []byte{22, 3, 1, 0x02, 0x00, 1, 0, 1, 0xfc, 3, 3}
		for _, b := range msg {
			if _, err := c.Write([]byte{b}); err != nil {
				closed <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		closed <- err
	}()
	if err := <-closed; err == nil {
		t.Fatal("server sent data to a slowloris client")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("slowloris connection lived %v, handshake timeout is 300ms", d)
	}
	failures(t, n, "timeout")
}

func TestHandshakeSelf(t *testing.T) {
	n := newTestNode(t)
	_, port, _ := net.SplitHostPort(n.Addr())
	own := n.Addr()
	alias := net.JoinHostPort("::ffff:127.0.0.1", port) // the same socket under another name
	if err := n.SetTargets([]string{own, alias}); err != nil {
		t.Fatal(err)
	}
	failures(t, n, "self")
	waitFor(t, 5*time.Second, "alias marked as self", func() bool {
		n.mu.RLock()
		defer n.mu.RUnlock()
		return n.self[alias] && n.plan.targets[alias].self
	})
	dials := n.Stats().Dials
	time.Sleep(5 * n.cfg.RedialInterval)
	if got := n.Stats().Dials; got != dials {
		t.Fatalf("dialled ourselves again: %d dials, then %d", dials, got)
	}
	if dials != 1 {
		t.Errorf("dials = %d, want 1 (the own listen address is never dialled)", dials)
	}
	if len(n.Links()) != 0 || n.rec.count("up") != 0 {
		t.Fatal("link to ourselves")
	}
}

func TestHandshakeInsecure(t *testing.T) {
	insecure := func(c *Config) { c.ClusterSecret = nil }
	a, b := newTestNode(t, insecure), newTestNode(t, insecure)
	connect(t, a, b)

	// A node with a secret refuses an insecure one.
	s := newTestNode(t)
	if err := a.SetTargets([]string{b.Addr(), s.Addr()}); err != nil {
		t.Fatal(err)
	}
	failures(t, s, "certificate")
	if s.rec.count("up") != 0 {
		t.Fatal("secure node admitted an insecure one")
	}
}

func TestHandshakeClusterMismatch(t *testing.T) {
	var la, lb logCapture
	a := newTestNode(t, func(c *Config) { c.Logger = la.logger(t) })
	b := newTestNode(t, func(c *Config) { c.ClusterName = "other"; c.Logger = lb.logger(t) })
	if err := a.SetTargets([]string{b.Addr()}); err != nil {
		t.Fatal(err)
	}
	failures(t, a, "cluster")
	failures(t, b, "cluster")
	for name, l := range map[string]*logCapture{"a": &la, "b": &lb} {
		waitFor(t, 5*time.Second, name+" to log the mismatch at warn with the peer's address", func() bool {
			return l.contains("level=WARN") && l.contains("cluster name mismatch") && l.contains("127.0.0.1:")
		})
	}
	if a.rec.count("up")+b.rec.count("up") != 0 {
		t.Fatal("link between clusters")
	}
}

func TestHandshakeAuthorize(t *testing.T) {
	var la logCapture
	var mu sync.Mutex
	var seen PeerInfo
	a := newTestNode(t, func(c *Config) { c.Logger = la.logger(t); c.AppHello = []byte("raft-id=7") })
	b := newTestNode(t, func(c *Config) {
		c.Authorize = func(p PeerInfo) error {
			mu.Lock()
			seen = p
			mu.Unlock()
			return errors.New("go away")
		}
	})
	if err := a.SetTargets([]string{b.Addr()}); err != nil {
		t.Fatal(err)
	}
	failures(t, a, "unauthorized")
	failures(t, b, "unauthorized")
	waitFor(t, 5*time.Second, "the refused side to log the reason", func() bool { return la.contains("go away") })
	mu.Lock()
	got := seen
	mu.Unlock()
	if seen := got; seen.Key != a.PublicKey() || string(seen.App) != "raft-id=7" || seen.Dialled || seen.ClusterName != "test" {
		t.Errorf("Authorize saw %+v", seen)
	}
	// Refusals back off (100ms, 200ms, 400ms, ...): far fewer attempts than
	// one per RedialInterval, which would be about 30 in 3s.
	time.Sleep(3 * time.Second)
	if d := a.Stats().Dials; d > 12 {
		t.Errorf("%d dials in about 3s to a peer that refuses us", d)
	}
}

func TestDuplicateLinkResolution(t *testing.T) {
	a, b := newTestNode(t), newTestNode(t)
	connect(t, a, b)
	// b dials a as well, by hand: two links exist for a moment.
	for range 3 {
		b.wg.Go(func() { b.dial(a.Addr()) })
		a.wg.Go(func() { a.dial(b.Addr()) })
	}
	waitFor(t, 10*time.Second, "duplicates resolved", func() bool {
		return a.Stats().Duplicates+b.Stats().Duplicates >= 6 &&
			a.rec.isUp(b.PublicKey()) && b.rec.isUp(a.PublicKey())
	})
	waitFor(t, 10*time.Second, "both ends on the same link", func() bool {
		la, lb := a.currentLink(b.PublicKey()), b.currentLink(a.PublicKey())
		return la != nil && lb != nil && !la.isClosing() && !lb.isClosing() &&
			la.rankKey == lb.rankKey && la.rankNonce == lb.rankNonce
	})
	la := a.currentLink(b.PublicKey())
	smaller := a.PublicKey()
	if b.PublicKey().less(smaller) {
		smaller = b.PublicKey()
	}
	if la.rankKey != smaller {
		t.Errorf("kept the link dialled by %v, want the smaller key %v", la.rankKey, smaller)
	}
	if !a.Send(b.PublicKey(), []byte("still works")) {
		t.Fatal("send failed after duplicate resolution")
	}
	waitFor(t, 5*time.Second, "datagram", func() bool { return b.rec.count("dg") == 1 })
}

func TestSimultaneousDial(t *testing.T) {
	for i := range 5 {
		a, b := newTestNode(t), newTestNode(t)
		_ = a.SetTargets([]string{b.Addr()})
		_ = b.SetTargets([]string{a.Addr()})
		linked(t, a, b)
		waitFor(t, 10*time.Second, "one agreed link", func() bool {
			la, lb := a.currentLink(b.PublicKey()), b.currentLink(a.PublicKey())
			return la != nil && lb != nil && la.rankNonce == lb.rankNonce && la.rankKey == lb.rankKey &&
				a.rec.isUp(b.PublicKey()) && b.rec.isUp(a.PublicKey())
		})
		t.Logf("round %d: duplicates a=%d b=%d, ups a=%d b=%d", i, a.Stats().Duplicates, b.Stats().Duplicates,
			a.rec.count("up"), b.rec.count("up"))
	}
}
