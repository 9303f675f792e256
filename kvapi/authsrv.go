package kvapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"github.com/meshkv/meshkv/kvapi/auth"
)

// authServer is etcd's Auth service. Changes are proposed with the caller's
// identity in the request header and checked when applied (admin
// permission, as etcd checks them); reads are served after a
// linearizability barrier from the local replica, checked the same way.
type authServer struct {
	*Server
	pb.UnimplementedAuthServer
}

var _ pb.AuthServer = authServer{}

func (s *Server) registerAuth(g *grpc.Server) { pb.RegisterAuthServer(g, authServer{Server: s}) }

// Auth returns the auth state the services check requests against.
func (s *Server) Auth() *auth.Store { return s.auth }

// proposeAuth replicates an auth request with the caller's identity.
func (s authServer) proposeAuth(ctx context.Context, r *pb.InternalRaftRequest) (any, error) {
	ai, err := s.authInfo(ctx)
	if err != nil {
		return nil, err
	}
	r.Header = requestHeader(ai)
	return s.propose(ctx, r)
}

// respond fills in the header of a response proposeAuth returned.
func respond[T any](s *Server, v any, err error, setHeader func(T, *pb.ResponseHeader)) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	resp, ok := v.(T)
	if !ok {
		return zero, unexpected(v)
	}
	setHeader(resp, s.header(s.store.Rev()))
	return resp, nil
}

func (s authServer) AuthEnable(ctx context.Context, r *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	v, err := s.proposeAuth(ctx, &pb.InternalRaftRequest{AuthEnable: r})
	return respond(s.Server, v, err, func(r *pb.AuthEnableResponse, h *pb.ResponseHeader) { r.Header = h })
}

func (s authServer) AuthDisable(ctx context.Context, r *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	v, err := s.proposeAuth(ctx, &pb.InternalRaftRequest{AuthDisable: r})
	return respond(s.Server, v, err, func(r *pb.AuthDisableResponse, h *pb.ResponseHeader) { r.Header = h })
}

// AuthStatus is a linearizable read (etcd proposes it; the answer is the
// same).
func (s authServer) AuthStatus(ctx context.Context, _ *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	if _, err := s.authInfo(ctx); err != nil {
		return nil, err
	}
	if err := s.readBarrier(ctx); err != nil {
		return nil, err
	}
	resp := s.auth.AuthStatus()
	resp.Header = s.header(s.store.Rev())
	return resp, nil
}

// Authenticate checks the password on this member, against a linearizable
// view of the users, then proposes the authentication without the password
// (so it never enters the log), as etcd does: every member registers a
// simple token; this member signs a JWT. If the auth state changed between
// the check and the proposal, it starts over.
func (s authServer) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	if err := s.readBarrier(ctx); err != nil {
		return nil, err
	}
	for {
		checked, err := s.auth.CheckPassword(r.Name, r.Password)
		if err != nil {
			return nil, authError(err)
		}
		prefix, err := s.auth.NewTokenPrefix()
		if err != nil {
			return nil, err
		}
		v, err := s.propose(ctx, &pb.InternalRaftRequest{Authenticate: &pb.InternalAuthenticateRequest{Name: r.Name, SimpleToken: prefix}})
		if err != nil {
			return nil, err
		}
		g, ok := v.(*auth.Grant)
		if !ok {
			return nil, unexpected(v)
		}
		if checked != s.auth.Revision() {
			s.cfg.Logger.Info("kvapi: auth revision moved while authenticating; retrying", "user", r.Name)
			continue
		}
		tok, err := s.auth.Token(g)
		if err != nil {
			return nil, authError(err)
		}
		return &pb.AuthenticateResponse{Header: s.header(s.store.Rev()), Token: tok}, nil
	}
}

// UserAdd hashes the password before proposing (etcd 3.5 and later), so
// that neither the log nor snapshots hold it.
func (s authServer) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	req := &pb.AuthUserAddRequest{Name: r.Name, Options: r.Options, HashedPassword: r.HashedPassword}
	if r.Options == nil || !r.Options.NoPassword {
		h, err := s.auth.HashPassword(r.Password)
		if err != nil {
			return nil, authError(err)
		}
		req.HashedPassword = h
	}
	v, err := s.proposeAuth(ctx, &pb.InternalRaftRequest{AuthUserAdd: req})
	return respond(s.Server, v, err, func(r *pb.AuthUserAddResponse, h *pb.ResponseHeader) { r.Header = h })
}

func (s authServer) UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	v, err := s.proposeAuth(ctx, &pb.InternalRaftRequest{AuthUserDelete: r})
	return respond(s.Server, v, err, func(r *pb.AuthUserDeleteResponse, h *pb.ResponseHeader) { r.Header = h })
}

// UserChangePassword hashes a new password before proposing, as UserAdd.
func (s authServer) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	req := &pb.AuthUserChangePasswordRequest{Name: r.Name, HashedPassword: r.HashedPassword}
	if r.Password != "" {
		h, err := s.auth.HashPassword(r.Password)
		if err != nil {
			return nil, authError(err)
		}
		req.HashedPassword = h
	}
	v, err := s.proposeAuth(ctx, &pb.InternalRaftRequest{AuthUserChangePassword: req})
	return respond(s.Server, v, err, func(r *pb.AuthUserChangePasswordResponse, h *pb.ResponseHeader) { r.Header = h })
}

func (s authServer) UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	v, err := s.proposeAuth(ctx, &pb.InternalRaftRequest{AuthUserGrantRole: r})
	return respond(s.Server, v, err, func(r *pb.AuthUserGrantRoleResponse, h *pb.ResponseHeader) { r.Header = h })
}

func (s authServer) UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	v, err := s.proposeAuth(ctx, &pb.InternalRaftRequest{AuthUserRevokeRole: r})
	return respond(s.Server, v, err, func(r *pb.AuthUserRevokeRoleResponse, h *pb.ResponseHeader) { r.Header = h })
}

func (s authServer) RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	v, err := s.proposeAuth(ctx, &pb.InternalRaftRequest{AuthRoleAdd: r})
	return respond(s.Server, v, err, func(r *pb.AuthRoleAddResponse, h *pb.ResponseHeader) { r.Header = h })
}

func (s authServer) RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	v, err := s.proposeAuth(ctx, &pb.InternalRaftRequest{AuthRoleDelete: r})
	return respond(s.Server, v, err, func(r *pb.AuthRoleDeleteResponse, h *pb.ResponseHeader) { r.Header = h })
}

func (s authServer) RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	v, err := s.proposeAuth(ctx, &pb.InternalRaftRequest{AuthRoleGrantPermission: r})
	return respond(s.Server, v, err, func(r *pb.AuthRoleGrantPermissionResponse, h *pb.ResponseHeader) { r.Header = h })
}

func (s authServer) RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	v, err := s.proposeAuth(ctx, &pb.InternalRaftRequest{AuthRoleRevokePermission: r})
	return respond(s.Server, v, err, func(r *pb.AuthRoleRevokePermissionResponse, h *pb.ResponseHeader) { r.Header = h })
}

// authRead serves one of the read-only auth requests, which etcd proposes
// and checks when applied: here a linearizability barrier, then the same
// check against this member's replica.
func (s authServer) authRead(ctx context.Context, check func(auth.Checker, *auth.AuthInfo) error) error {
	ai, err := s.authInfo(ctx)
	if err != nil {
		return err
	}
	if err := s.readBarrier(ctx); err != nil {
		return err
	}
	return authError(check(s.auth.Checker(), ai))
}

func (s authServer) UserGet(ctx context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	if err := s.authRead(ctx, func(c auth.Checker, ai *auth.AuthInfo) error { return c.CheckUserGet(ai, r.Name) }); err != nil {
		return nil, err
	}
	resp, err := s.auth.UserGet(r)
	if err != nil {
		return nil, authError(err)
	}
	resp.Header = s.header(s.store.Rev())
	return resp, nil
}

func (s authServer) UserList(ctx context.Context, r *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	if err := s.authRead(ctx, auth.Checker.IsAdminPermitted); err != nil {
		return nil, err
	}
	resp, err := s.auth.UserList(r)
	if err != nil {
		return nil, authError(err)
	}
	resp.Header = s.header(s.store.Rev())
	return resp, nil
}

func (s authServer) RoleGet(ctx context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	if err := s.authRead(ctx, func(c auth.Checker, ai *auth.AuthInfo) error { return c.CheckRoleGet(ai, r.Role) }); err != nil {
		return nil, err
	}
	resp, err := s.auth.RoleGet(r)
	if err != nil {
		return nil, authError(err)
	}
	resp.Header = s.header(s.store.Rev())
	return resp, nil
}

func (s authServer) RoleList(ctx context.Context, r *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	if err := s.authRead(ctx, auth.Checker.IsAdminPermitted); err != nil {
		return nil, err
	}
	resp, err := s.auth.RoleList(r)
	if err != nil {
		return nil, authError(err)
	}
	resp.Header = s.header(s.store.Rev())
	return resp, nil
}
