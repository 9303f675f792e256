package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"google.golang.org/grpc/credentials"
)

// InprocInfo is the peer information of a connection from the embedding
// process itself (Inproc): not a network client, so the auth layer may
// trust it.
type InprocInfo struct{ credentials.CommonAuthInfo }

// AuthType implements credentials.AuthInfo.
func (InprocInfo) AuthType() string { return "inproc" }

// plainInfo is the peer information of a plaintext connection.
type plainInfo struct{ credentials.CommonAuthInfo }

func (plainInfo) AuthType() string { return "insecure" }

// tlsRecordHandshake is the first byte of every TLS connection.
const tlsRecordHandshake = 0x16

// ErrNotTLS is returned for a connection to a TLS-only listener that does
// not start a TLS handshake.
var ErrNotTLS = errors.New("listen: plaintext connection to a TLS listener")

// Credentials returns the gRPC server credentials for listeners made by
// Listen and Inproc: each connection is handshaken as its listener says
// (TLS with cfg, plaintext, or either, by its first byte); in-process ones
// get InprocInfo. cfg may be nil when no listener asks for TLS. Connections
// from other listeners are plaintext.
//
// gRPC runs the handshake on the connection's own goroutine under its
// connection timeout, so a client that sends nothing holds up nobody else.
func Credentials(cfg *tls.Config) credentials.TransportCredentials {
	c := &creds{}
	if cfg != nil {
		c.tls = credentials.NewTLS(cfg)
	}
	return c
}

type creds struct {
	tls credentials.TransportCredentials // nil without TLS
}

var _ credentials.TransportCredentials = (*creds)(nil)

func (c *creds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc, ok := raw.(*conn)
	if !ok {
		return raw, plainInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
	}
	if tc.inproc {
		return raw, InprocInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
	}
	secure := tc.mode == Secure
	if tc.mode == Both {
		var first [1]byte
		if _, err := raw.Read(first[:]); err != nil {
			return nil, nil, err
		}
		secure = first[0] == tlsRecordHandshake
		raw = &peeked{Conn: raw, first: first[0], pending: true}
	}
	if !secure {
		return raw, plainInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
	}
	if c.tls == nil {
		return nil, nil, errors.New("listen: TLS listener without a TLS configuration")
	}
	return c.tls.ServerHandshake(raw)
}

func (c *creds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("listen: server credentials cannot dial")
}

func (c *creds) Info() credentials.ProtocolInfo {
	if c.tls != nil {
		return c.tls.Info()
	}
	return credentials.ProtocolInfo{SecurityProtocol: "insecure"}
}

func (c *creds) Clone() credentials.TransportCredentials {
	cc := &creds{}
	if c.tls != nil {
		cc.tls = c.tls.Clone()
	}
	return cc
}

func (c *creds) OverrideServerName(string) error { return nil }

// peeked replays one byte already read from a connection.
type peeked struct {
	net.Conn
	first   byte
	pending bool
}

func (p *peeked) Read(b []byte) (int, error) {
	if p.pending && len(b) > 0 {
		p.pending = false
		b[0] = p.first
		return 1, nil
	}
	return p.Conn.Read(b)
}
