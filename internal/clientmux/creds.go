package clientmux

import (
	"context"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Credentials returns the gRPC server credentials for Config.GRPC: a
// connection the mux terminated TLS on gets a credentials.TLSInfo built
// from its handshake (with the client's verified certificate chains), as
// grpc's own TLS credentials give; every other connection is handshaken by
// inner (nil: insecure credentials).
func Credentials(inner credentials.TransportCredentials) credentials.TransportCredentials {
	if inner == nil {
		inner = insecure.NewCredentials()
	}
	return creds{inner: inner}
}

type creds struct {
	inner credentials.TransportCredentials
}

var _ credentials.TransportCredentials = creds{}

func (c creds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if tc, ok := raw.(*tlsConn); ok {
		return raw, credentials.TLSInfo{
			State:          tc.ConnectionState(),
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		}, nil
	}
	return c.inner.ServerHandshake(raw)
}

func (c creds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.inner.ClientHandshake(ctx, authority, raw)
}

func (c creds) Info() credentials.ProtocolInfo { return c.inner.Info() }

func (c creds) Clone() credentials.TransportCredentials { return creds{inner: c.inner.Clone()} }

func (c creds) OverrideServerName(name string) error { return c.inner.OverrideServerName(name) }
