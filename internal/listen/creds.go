package listen

import (
	"context"
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

// Credentials returns the gRPC server credentials for the connections the
// gRPC server gets: in-process ones (Inproc) get InprocInfo, every other one
// is plain text to gRPC. TLS, where a listener asks for it, is terminated
// before gRPC sees the connection, by the client port's multiplexer, whose
// credentials (clientmux.Credentials) wrap these and recognize its TLS
// connections.
func Credentials() credentials.TransportCredentials { return creds{} }

type creds struct{}

var _ credentials.TransportCredentials = creds{}

func (creds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if tc, ok := raw.(*conn); ok && tc.inproc {
		return raw, InprocInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
	}
	return raw, plainInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
}

func (creds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("listen: server credentials cannot dial")
}

func (creds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "insecure"}
}

func (c creds) Clone() credentials.TransportCredentials { return c }

func (creds) OverrideServerName(string) error { return nil }
