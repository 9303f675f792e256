package kvapi

import (
	"context"
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/meshkv/meshkv/internal/listen"
	"github.com/meshkv/meshkv/kvapi/auth"
)

// Who a request acts as
//
// As in etcd, a request names its user by a token in its metadata (from
// Authenticate), or, with ClientCertAuth, by the common name of its verified
// TLS client certificate; a token wins over a certificate. Credentials are
// looked at only while authentication is enabled.
//
// Requests over the in-process connection (Node.Client) come from the
// embedding application itself: without a token they act as the root user
// at any auth revision (auth.RootInfo), so the application keeps full
// control of its own store, can enable authentication and manage users, and
// never sees its requests refused as stale. The Lock and Election services,
// which work through that connection, forward their caller's credentials
// instead (forwardedUserKey), so a lock is taken with the caller's
// permissions, as etcd's lock service takes it.

// forwardedUserKey marks an in-process request made on behalf of a network
// client without a token: its value is the user the client's certificate
// named, or empty for a client without credentials. It is honoured only on
// the in-process connection, which no network client can reach.
const forwardedUserKey = "meshkv-forwarded-user"

// grpcGatewayKey is the header etcd's HTTP gateway adds; etcd ignores the
// certificate of such requests (the gateway's own), and so does meshkv.
const grpcGatewayKey = "grpcgateway-accept"

// authInfo returns who the request of ctx acts as: nil while authentication
// is disabled or for a request without credentials, etcd's invalid-token
// error for a bad token.
func (s *Server) authInfo(ctx context.Context) (*auth.AuthInfo, error) {
	if !s.auth.Enabled() {
		return nil, nil
	}
	if tok, ok := token(ctx); ok {
		ai, err := s.auth.AuthInfoFromToken(ctx, tok)
		if err != nil {
			return nil, authError(err)
		}
		return ai, nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, nil
	}
	if isInproc(p) {
		if v := metadata.ValueFromIncomingContext(ctx, forwardedUserKey); len(v) > 0 {
			return s.auth.AuthInfoFromCommonName(v[0]), nil
		}
		return auth.RootInfo(), nil
	}
	return s.auth.AuthInfoFromCommonName(s.certUser(ctx, p)), nil
}

// certUser returns the user the verified client certificate of a TLS
// connection names, with ClientCertAuth; "" for none.
func (s *Server) certUser(ctx context.Context, p *peer.Peer) string {
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || !s.cfg.ClientCertAuth || len(metadata.ValueFromIncomingContext(ctx, grpcGatewayKey)) > 0 {
		return ""
	}
	for _, chain := range info.State.VerifiedChains {
		if len(chain) > 0 {
			return chain[0].Subject.CommonName
		}
	}
	return ""
}

// token returns the token a request carries, as etcd looks for it.
func token(ctx context.Context) (string, bool) {
	for _, key := range []string{rpctypes.TokenFieldNameGRPC, rpctypes.TokenFieldNameSwagger} {
		if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
			return v[0], true
		}
	}
	return "", false
}

// forwardCaller returns the context in which the Lock and Election
// services act for the caller of ctx through the in-process client: with
// the caller's token, or as the user its certificate names, or as nobody; a
// caller that is itself in-process keeps acting as the application. Each
// request the services make is then checked as etcd checks the requests its
// lock service makes with the caller's context.
func (s *Server) forwardCaller(ctx context.Context) context.Context {
	out := metadata.MD{}
	p, _ := peer.FromContext(ctx)
	switch tok, hasToken := token(ctx); {
	case hasToken:
		out.Set(rpctypes.TokenFieldNameGRPC, tok)
	case p == nil || !isInproc(p):
		name := ""
		if p != nil {
			name = s.certUser(ctx, p)
		}
		out.Set(forwardedUserKey, name)
	default: // in-process: a forwarded caller stays forwarded
		if v := metadata.ValueFromIncomingContext(ctx, forwardedUserKey); len(v) > 0 {
			out.Set(forwardedUserKey, v[0])
		}
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		out = metadata.Join(md, out)
	}
	return metadata.NewOutgoingContext(ctx, out)
}

func isInproc(p *peer.Peer) bool {
	_, ok := p.AuthInfo.(listen.InprocInfo)
	return ok
}

// requestHeader returns the header a proposal carries for the apply-time
// permission checks: the identity, or nil for a request without
// credentials (or any request while authentication is disabled).
func requestHeader(ai *auth.AuthInfo) *pb.RequestHeader {
	if ai == nil {
		return nil
	}
	return &pb.RequestHeader{Username: ai.Username, AuthRevision: ai.Revision}
}

// authError maps an error of the auth package to etcd's gRPC error.
func authError(err error) error {
	if g, ok := auth.GRPCError(err); ok {
		return g
	}
	return err
}

// requireAuth refuses a request without credentials while authentication is
// enabled (etcd 3.7's requireAuthInfo), returning the identity.
func (s *Server) requireAuth(ctx context.Context) (*auth.AuthInfo, error) {
	ai, err := s.authInfo(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.auth.Checker().RequireAuthInfo(ai); err != nil {
		return nil, authError(err)
	}
	return ai, nil
}

// requireAdmin refuses a request whose user lacks the root role while
// authentication is enabled (maintenance, membership, compaction).
func (s *Server) requireAdmin(ctx context.Context) error {
	ai, err := s.authInfo(ctx)
	if err != nil {
		return err
	}
	return authError(s.auth.Checker().IsAdminPermitted(ai))
}

// checkRead checks a serve-time read (Range, read-only Txn) before it is
// served; stale reports afterwards whether the auth state changed while it
// was, as etcd refuses such a read with ErrAuthOldRevision.
func (s *Server) checkRead(ctx context.Context, check func(auth.Checker, *auth.AuthInfo) error) (stale func() error, err error) {
	if !s.auth.Enabled() {
		return noStale, nil
	}
	ai, err := s.authInfo(ctx)
	if err != nil {
		return nil, err
	}
	if err := check(s.auth.Checker(), ai); err != nil {
		return nil, authError(err)
	}
	return func() error { return authError(s.auth.StaleRead(ai)) }, nil
}

func noStale() error { return nil }

// watchRefusal returns the cancel reason etcd gives a watch create the
// caller may not make (read permission on its range, checked once, when the
// watcher is created), or "".
func (s *Server) watchRefusal(ctx context.Context, key, end []byte) string {
	if !s.auth.Enabled() {
		return ""
	}
	ai, err := s.authInfo(ctx)
	if err == nil {
		err = authError(s.auth.Checker().IsRangePermitted(ai, key, end))
	}
	switch {
	case err == nil:
		return ""
	case errors.Is(err, rpctypes.ErrGRPCInvalidAuthToken), errors.Is(err, rpctypes.ErrGRPCAuthOldRevision),
		errors.Is(err, rpctypes.ErrGRPCUserEmpty):
		return err.Error()
	}
	return rpctypes.ErrGRPCPermissionDenied.Error()
}
