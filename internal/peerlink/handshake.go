package peerlink

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// alpn is the TLS application protocol of peer links.
const alpn = "meshkv-peer/1"

// readBufSize is the bufio buffer in front of each link's tls.Conn.
const readBufSize = 32 << 10

// tlsConfigs builds the server and client TLS configurations: TLS 1.3 only,
// mutual authentication with one Ed25519 certificate each, no session
// resumption (every connection proves its keys afresh), no hostnames.
func tlsConfigs(cert tls.Certificate, cs *ClusterSecret) (server, client *tls.Config) {
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		_, err := verifyPeer(raw, cs)
		return err
	}
	server = &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		MaxVersion:                  tls.VersionTLS13,
		Certificates:                []tls.Certificate{cert},
		ClientAuth:                  tls.RequireAnyClientCert,
		VerifyPeerCertificate:       verify,
		NextProtos:                  []string{alpn},
		SessionTicketsDisabled:      true,
		DynamicRecordSizingDisabled: true,
	}
	client = &tls.Config{
		MinVersion:         tls.VersionTLS13,
		MaxVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by VerifyPeerCertificate: no hostnames, our own CA rule
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		},
		VerifyPeerCertificate:       verify,
		NextProtos:                  []string{alpn},
		DynamicRecordSizingDisabled: true,
	}
	return server, client
}

// handshakeError is a failed handshake with its classification.
type handshakeError struct {
	reason failReason
	err    error
	key    PublicKey // the peer's key, when TLS got that far
	hasKey bool
}

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

func hsFail(r failReason, format string, args ...any) *handshakeError {
	return &handshakeError{reason: r, err: fmt.Errorf(format, args...)}
}

// classifyTLS maps an error from the TLS handshake (or the first reads and
// writes after it) to a reason.
func classifyTLS(ctx context.Context, err error) failReason {
	var rh tls.RecordHeaderError
	var oe *net.OpError
	var ne net.Error
	isOp := errors.As(err, &oe)
	remote := isOp && oe.Op == "remote error" // a TLS alert from the peer
	switch {
	case errors.Is(err, errBadCertificate):
		return failCertificate
	case errors.As(err, &rh):
		return failNotTLS
	case (remote || !isOp) && strings.Contains(err.Error(), "certificate"):
		// A certificate alert from the peer (bad_certificate,
		// certificate_required, ...) or a local certificate failure
		// ("client didn't provide a certificate").
		return failCertificate
	case remote:
		return failTLS
	case errors.Is(ctx.Err(), context.Canceled):
		return failClosed
	case errors.Is(err, context.DeadlineExceeded), errors.Is(ctx.Err(), context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return failTimeout
	case isOp, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return failConn
	}
	return failTLS
}

// handshake runs TLS, the Hello exchange, Authorize and READY on conn, all
// before ctx's deadline, and returns the new (not yet registered) link. On
// failure it closes conn.
func (n *Node) handshake(ctx context.Context, conn net.Conn, dialled bool) (*link, *handshakeError) {
	l, err := n.handshakeConn(ctx, conn, dialled)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return l, nil
}

func (n *Node) handshakeConn(ctx context.Context, conn net.Conn, dialled bool) (*link, *handshakeError) {
	setSockOpts(conn, max(n.cfg.DeadAfterMax, n.cfg.WriteTimeout))
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Close unblocks every read and write when ctx ends (Node.Close).
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	var tc *tls.Conn
	if dialled {
		tc = tls.Client(conn, n.clientTLS)
	} else {
		tc = tls.Server(conn, n.serverTLS)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, &handshakeError{reason: classifyTLS(ctx, err), err: fmt.Errorf("tls handshake: %w", err)}
	}
	st := tc.ConnectionState()
	if st.NegotiatedProtocol != alpn {
		return nil, hsFail(failTLS, "tls: peer did not negotiate %q", alpn)
	}
	if len(st.PeerCertificates) != 1 {
		return nil, hsFail(failCertificate, "tls: %d peer certificates", len(st.PeerCertificates))
	}
	pub, ok := st.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, hsFail(failCertificate, "tls: peer key is not Ed25519")
	}
	var key PublicKey
	copy(key[:], pub)
	fail := func(r failReason, format string, args ...any) *handshakeError {
		e := hsFail(r, format, args...)
		e.key, e.hasKey = key, true
		return e
	}

	var nonce uint64
	if dialled {
		var b [8]byte
		_, _ = rand.Read(b[:])
		nonce = binary.BigEndian.Uint64(b[:])
	}
	ours := hello{
		version:     helloVersion,
		cluster:     n.cfg.ClusterName,
		advertise:   n.advertise,
		nonce:       nonce,
		maxDatagram: uint64(n.cfg.MaxDatagram),
		window:      uint64(n.cfg.StreamWindow),
		app:         n.cfg.AppHello,
	}
	if _, err := tc.Write(appendHello(nil, ours)); err != nil {
		return nil, fail(classifyTLS(ctx, err), "write hello: %w", err)
	}
	br := bufio.NewReaderSize(tc, readBufSize)
	limits := recordLimits{}
	var scratch []byte
	t, body, err := readRecord(br, limits, &scratch)
	if err != nil {
		if errors.Is(err, errMalformed) {
			return nil, fail(failHello, "read hello: %w", err)
		}
		return nil, fail(classifyTLS(ctx, err), "read hello: %w", err)
	}
	if t == recClose {
		return nil, n.peerRefused(key, body)
	}
	if t != recHello {
		return nil, fail(failHello, "expected HELLO, got %s", recordName(t))
	}
	theirs, err := decodeHello(body)
	if err != nil {
		return nil, fail(failHello, "hello: %w", err)
	}
	info := PeerInfo{
		Key:           key,
		RemoteAddr:    conn.RemoteAddr().String(),
		AdvertiseAddr: theirs.advertise,
		ClusterName:   theirs.cluster,
		App:           theirs.app,
		Dialled:       dialled,
		Version:       int(min(theirs.version, helloVersion)),
	}
	refuse := func(r failReason, code closeCode, format string, args ...any) *handshakeError {
		e := fail(r, format, args...)
		if _, err := tc.Write(appendClose(nil, code, e.err.Error())); err == nil {
			// Let the peer read the reason before the connection goes
			// (closing with its READY unread would reset it).
			lingerClose(conn)
			drainClose(conn)
		}
		return e
	}
	switch {
	case key == n.id.pub:
		return nil, refuse(failSelf, closeSelf, "connected to ourselves")
	case theirs.cluster != n.cfg.ClusterName:
		return nil, refuse(failCluster, closeCluster, "cluster name mismatch: ours %q, theirs %q", n.cfg.ClusterName, theirs.cluster)
	}
	if n.cfg.Authorize != nil {
		if err := n.cfg.Authorize(info); err != nil {
			return nil, refuse(failUnauthorized, closeUnauthorized, "not authorized: %v", err)
		}
	}
	if _, err := tc.Write(appendUvarintRecord(nil, recReady)); err != nil {
		return nil, fail(classifyTLS(ctx, err), "write ready: %w", err)
	}
	t, body, err = readRecord(br, limits, &scratch)
	if err != nil {
		return nil, fail(classifyTLS(ctx, err), "read ready: %w", err)
	}
	switch t {
	case recReady:
	case recClose:
		return nil, n.peerRefused(key, body)
	default:
		return nil, fail(failHello, "expected READY, got %s", recordName(t))
	}
	if !stop() {
		return nil, fail(failClosed, "shutting down")
	}
	_ = conn.SetDeadline(time.Time{})

	l := newLink(n, conn, tc, br, info)
	if dialled {
		l.rankKey, l.rankNonce = n.id.pub, nonce
	} else {
		l.rankKey, l.rankNonce = key, theirs.nonce
	}
	l.peerMaxDatagram = int(theirs.maxDatagram)
	l.peerWindow = int(theirs.window)
	return l, nil
}

// peerRefused turns a CLOSE received during the handshake into an error.
func (n *Node) peerRefused(key PublicKey, body []byte) *handshakeError {
	code, reason, err := decodeClose(body)
	if err != nil {
		return &handshakeError{reason: failHello, err: err, key: key, hasKey: true}
	}
	r := failClosed
	switch code {
	case closeSelf:
		r = failSelf
	case closeCluster:
		r = failCluster
	case closeUnauthorized:
		r = failUnauthorized
	case closeVersion, closeProtocol:
		r = failHello
	}
	return &handshakeError{reason: r, key: key, hasKey: true,
		err: fmt.Errorf("%w (%v): %s", ErrPeerClosed, code, reason)}
}
