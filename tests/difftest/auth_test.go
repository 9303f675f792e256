package difftest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/meshkv/meshkv"
)

// authTarget is one server under comparison with its auth clients and the
// tokens its users got.
type authTarget struct {
	*target
	auth   pb.AuthClient
	maint  pb.MaintenanceClient
	clus   pb.ClusterClient
	tokens map[string]string
}

// authAnswer is a response or an error, comparable across servers.
type authAnswer struct {
	resp string // prototext with the server-naming header fields cleared
	err  string // gRPC code and message
}

func answer(resp proto.Message, err error) authAnswer {
	if err != nil {
		s := status.Convert(err)
		return authAnswer{err: fmt.Sprintf("%v %q", s.Code(), s.Message())}
	}
	if resp == nil || !resp.ProtoReflect().IsValid() {
		return authAnswer{resp: "<nil>"}
	}
	resp = proto.Clone(resp)
	clearHeaders(resp.ProtoReflect())
	return authAnswer{resp: prototext.MarshalOptions{}.Format(resp)}
}

// clearHeaders zeroes the cluster id, member id and raft term in every
// response header a message holds.
func clearHeaders(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		if fd.Message().FullName() == "etcdserverpb.ResponseHeader" && !fd.IsList() {
			h := v.Message()
			for _, name := range []protoreflect.Name{"cluster_id", "member_id", "raft_term"} {
				h.Clear(h.Descriptor().Fields().ByName(name))
			}
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				clearHeaders(l.Get(i).Message())
			}
		case fd.IsMap():
		default:
			clearHeaders(v.Message())
		}
		return true
	})
}

// as returns ctx carrying user's token on this server ("" : none).
func (a *authTarget) as(ctx context.Context, user string) context.Context {
	if user == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, a.tokens[user])
}

// login authenticates user and keeps the token.
func (a *authTarget) login(ctx context.Context, user, password string) error {
	resp, err := a.auth.Authenticate(ctx, &pb.AuthenticateRequest{Name: user, Password: password})
	if err != nil {
		return err
	}
	a.tokens[user] = resp.Token
	return nil
}

// authCall is one request, made as a user, on either server.
type authCall struct {
	name string
	user string
	do   func(ctx context.Context, a *authTarget) (proto.Message, error)
}

func startAuthPair(t *testing.T, tokenOpts ...string) (ref, sut *authTarget) {
	t.Helper()
	var eo []func(*embed.Config)
	var mo []func(*meshkv.Config)
	for _, tok := range tokenOpts {
		eo = append(eo, func(c *embed.Config) { c.AuthToken = tok })
		mo = append(mo, func(c *meshkv.Config) { c.AuthToken = tok })
	}
	wrap := func(tg *target, conn *grpc.ClientConn) *authTarget {
		return &authTarget{target: tg, auth: pb.NewAuthClient(conn), maint: pb.NewMaintenanceClient(conn),
			clus: pb.NewClusterClient(conn), tokens: map[string]string{}}
	}
	ec := startEtcd(t, eo...)
	ref = wrap(newTarget("etcd", ec), ec)
	if *selfCheck {
		c := startEtcd(t, eo...)
		return ref, wrap(newTarget("etcd2", c), c)
	}
	mc := startMeshkv(t, mo...)
	return ref, wrap(newTarget("meshkv", mc), mc)
}

// compareCalls makes each call on both servers and fails on any difference.
// It returns how often etcd gave each answer kind (an error's message, or
// "ok"), so that callers can check the comparison was not vacuous.
func compareCalls(t *testing.T, ref, sut *authTarget, calls []authCall) map[string]int {
	t.Helper()
	kinds := map[string]int{}
	for i, c := range calls {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		a := answer(c.do(ref.as(ctx, c.user), ref))
		b := answer(c.do(sut.as(ctx, c.user), sut))
		cancel()
		if a != b {
			t.Errorf("call %d %s (as %q):\n etcd:   %s%s\n %s: %s%s", i, c.name, c.user, a.resp, a.err, sut.name, b.resp, b.err)
		}
		if a.err != "" {
			kinds[a.err]++
		} else {
			kinds["ok"]++
		}
	}
	return kinds
}

// wantKinds fails unless etcd gave every one of want at least once.
func wantKinds(t *testing.T, kinds map[string]int, want ...string) {
	t.Helper()
	for _, w := range want {
		found := false
		for k := range kinds {
			found = found || strings.Contains(k, w)
		}
		if !found {
			t.Errorf("no call answered %q (answers: %v)", w, kinds)
		}
	}
	t.Logf("answers: %v", kinds)
}

// rpc turns a typed response into a message without a typed nil.
func rpc[Resp proto.Message](resp Resp, err error) (proto.Message, error) {
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// kvCall, leaseCall, maintCall and clusterCall make a call of one service.
func kvCall(name, user string, f func(context.Context, pb.KVClient) (proto.Message, error)) authCall {
	return authCall{name: name, user: user, do: func(ctx context.Context, a *authTarget) (proto.Message, error) { return f(ctx, a.kv) }}
}

func leaseCall(name, user string, f func(context.Context, pb.LeaseClient) (proto.Message, error)) authCall {
	return authCall{name: name, user: user, do: func(ctx context.Context, a *authTarget) (proto.Message, error) { return f(ctx, a.lease) }}
}

// errOnly compares whether the call failed and how, not the response (for
// answers that name the member or count its bytes).
func errOnly(c authCall) authCall {
	do := c.do
	c.do = func(ctx context.Context, a *authTarget) (proto.Message, error) {
		_, err := do(ctx, a)
		return nil, err
	}
	return c
}

func maintCall(name, user string, f func(context.Context, pb.MaintenanceClient) (proto.Message, error)) authCall {
	return errOnly(authCall{name: name, user: user, do: func(ctx context.Context, a *authTarget) (proto.Message, error) { return f(ctx, a.maint) }})
}

func clusterCall(name, user string, f func(context.Context, pb.ClusterClient) (proto.Message, error)) authCall {
	return errOnly(authCall{name: name, user: user, do: func(ctx context.Context, a *authTarget) (proto.Message, error) { return f(ctx, a.clus) }})
}

// TestAuthAPI compares the whole Auth service, errors included, on etcd and
// meshkv.
func TestAuthAPI(t *testing.T) {
	ref, sut := startAuthPair(t)
	perm := func(typ authpb.Permission_Type, key, end string) *authpb.Permission {
		return &authpb.Permission{PermType: typ, Key: []byte(key), RangeEnd: []byte(end)}
	}
	a := func(name string, req proto.Message) authCall {
		return authCall{name: name, do: func(ctx context.Context, t *authTarget) (proto.Message, error) {
			return doAuth(ctx, t.auth, req)
		}}
	}
	asRoot := func(c authCall) authCall { c.user = "root"; return c }
	calls := []authCall{
		a("status", &pb.AuthStatusRequest{}),
		a("enable without root", &pb.AuthEnableRequest{}),
		a("disable while disabled", &pb.AuthDisableRequest{}),
		a("authenticate while disabled", &pb.AuthenticateRequest{Name: "root", Password: "x"}),
		a("add empty user", &pb.AuthUserAddRequest{}),
		a("add root", &pb.AuthUserAddRequest{Name: "root", Password: "rootpw"}),
		a("add root again", &pb.AuthUserAddRequest{Name: "root", Password: "x"}),
		a("add long password", &pb.AuthUserAddRequest{Name: "long", Password: strings.Repeat("x", 73)}),
		a("add no-password user", &pb.AuthUserAddRequest{Name: "np", Options: &authpb.UserAddOptions{NoPassword: true}}),
		a("add u", &pb.AuthUserAddRequest{Name: "u", Password: "upw"}),
		a("add empty role", &pb.AuthRoleAddRequest{}),
		a("add role r", &pb.AuthRoleAddRequest{Name: "r"}),
		a("add role r again", &pb.AuthRoleAddRequest{Name: "r"}),
		a("grant nil permission", &pb.AuthRoleGrantPermissionRequest{Name: "r"}),
		a("grant empty key", &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(authpb.Permission_READ, "", "")}),
		a("grant inverted range", &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(authpb.Permission_READ, "b", "a")}),
		a("grant equal range", &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(authpb.Permission_READ, "b", "b")}),
		a("grant to missing role", &pb.AuthRoleGrantPermissionRequest{Name: "x", Perm: perm(authpb.Permission_READ, "a", "")}),
		a("grant key", &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(authpb.Permission_READ, "k", "")}),
		a("grant prefix", &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(authpb.Permission_WRITE, "p/", "p0")}),
		a("grant same key, other range", &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(authpb.Permission_READ, "p/", "p/z")}),
		a("regrant prefix", &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(authpb.Permission_READWRITE, "p/", "p0")}),
		a("grant from key", &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(authpb.Permission_READWRITE, "z", "\x00")}),
		a("grant all", &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(authpb.Permission_READ, "\x00", "\x00")}),
		a("get role r", &pb.AuthRoleGetRequest{Role: "r"}),
		a("get missing role", &pb.AuthRoleGetRequest{Role: "x"}),
		a("revoke missing permission", &pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("k"), RangeEnd: []byte("l")}),
		a("revoke from missing role", &pb.AuthRoleRevokePermissionRequest{Role: "x", Key: []byte("k")}),
		a("revoke all", &pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("\x00"), RangeEnd: []byte("\x00")}),
		a("grant role to missing user", &pb.AuthUserGrantRoleRequest{User: "x", Role: "r"}),
		a("grant missing role", &pb.AuthUserGrantRoleRequest{User: "u", Role: "x"}),
		a("grant r to u", &pb.AuthUserGrantRoleRequest{User: "u", Role: "r"}),
		a("grant r to u again", &pb.AuthUserGrantRoleRequest{User: "u", Role: "r"}),
		a("grant root role before the role exists", &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}),
		a("get u", &pb.AuthUserGetRequest{Name: "u"}),
		a("get missing user", &pb.AuthUserGetRequest{Name: "x"}),
		a("list users", &pb.AuthUserListRequest{}),
		a("list roles", &pb.AuthRoleListRequest{}),
		a("add role root", &pb.AuthRoleAddRequest{Name: "root"}),
		a("get role root", &pb.AuthRoleGetRequest{Role: "root"}),
		a("revoke role not granted", &pb.AuthUserRevokeRoleRequest{Name: "np", Role: "r"}),
		a("revoke role from missing user", &pb.AuthUserRevokeRoleRequest{Name: "x", Role: "r"}),
		a("change password of missing user", &pb.AuthUserChangePasswordRequest{Name: "x", Password: "y"}),
		a("change password of no-password user", &pb.AuthUserChangePasswordRequest{Name: "np", Password: "y"}),
		a("status before enable", &pb.AuthStatusRequest{}),
		a("enable", &pb.AuthEnableRequest{}),
		a("enable again (no credentials)", &pb.AuthEnableRequest{}),
		a("status after enable", &pb.AuthStatusRequest{}),
		a("authenticate wrong password", &pb.AuthenticateRequest{Name: "u", Password: "nope"}),
		a("authenticate missing user", &pb.AuthenticateRequest{Name: "x", Password: "nope"}),
		a("authenticate no-password user", &pb.AuthenticateRequest{Name: "np", Password: ""}),
		a("list users without credentials", &pb.AuthUserListRequest{}),
		a("get empty-named user without credentials", &pb.AuthUserGetRequest{Name: ""}),
	}
	kinds := compareCalls(t, ref, sut, calls)
	wantKinds(t, kinds, "ok", "root user does not exist", "user name already exists", "user name is empty",
		"role name already exists", "role name is empty", "permission not given", "invalid auth management",
		"role name not found", "user name not found", "permission is not granted to the role",
		"role is not granted to the user", "authentication failed", "password was given for no password user",
		"authentication is not enabled", "bcrypt: password length exceeds 72 bytes")
	for _, tg := range []*authTarget{ref, sut} {
		for user, pw := range map[string]string{"root": "rootpw", "u": "upw"} {
			if err := tg.login(t.Context(), user, pw); err != nil {
				t.Fatalf("%s: login %s: %v", tg.name, user, err)
			}
		}
	}
	asU := func(c authCall) authCall { c.user = "u"; return c }
	calls = []authCall{
		asU(a("u lists users", &pb.AuthUserListRequest{})),
		asU(a("u gets itself", &pb.AuthUserGetRequest{Name: "u"})),
		asU(a("u gets root", &pb.AuthUserGetRequest{Name: "root"})),
		asU(a("u gets its role", &pb.AuthRoleGetRequest{Role: "r"})),
		asU(a("u gets root role", &pb.AuthRoleGetRequest{Role: "root"})),
		asU(a("u adds a role", &pb.AuthRoleAddRequest{Name: "y"})),
		asU(a("u disables auth", &pb.AuthDisableRequest{})),
		asU(a("u changes its password", &pb.AuthUserChangePasswordRequest{Name: "u", Password: "x"})),
		asU(a("u status", &pb.AuthStatusRequest{})),
		asRoot(a("root deletes root", &pb.AuthUserDeleteRequest{Name: "root"})),
		asRoot(a("root revokes root from root", &pb.AuthUserRevokeRoleRequest{Name: "root", Role: "root"})),
		asRoot(a("root deletes role root", &pb.AuthRoleDeleteRequest{Role: "root"})),
		asRoot(a("root lists users", &pb.AuthUserListRequest{})),
		asRoot(a("root gets role root", &pb.AuthRoleGetRequest{Role: "root"})),
		asRoot(a("root deletes role r", &pb.AuthRoleDeleteRequest{Role: "r"})),
		asRoot(a("u lost role r", &pb.AuthUserGetRequest{Name: "u"})),
		asRoot(a("root deletes np", &pb.AuthUserDeleteRequest{Name: "np"})),
		asRoot(a("root deletes missing user", &pb.AuthUserDeleteRequest{Name: "np"})),
		asRoot(a("root changes u's password", &pb.AuthUserChangePasswordRequest{Name: "u", Password: "new"})),
		asU(a("u's token after its password changed", &pb.AuthStatusRequest{})),
		asRoot(a("status", &pb.AuthStatusRequest{})),
		asRoot(a("disable", &pb.AuthDisableRequest{})),
		a("status after disable", &pb.AuthStatusRequest{}),
		a("delete root while disabled", &pb.AuthUserDeleteRequest{Name: "root"}),
		a("list users", &pb.AuthUserListRequest{}),
	}
	kinds = compareCalls(t, ref, sut, calls)
	wantKinds(t, kinds, "ok", "permission denied", "invalid auth token", "invalid auth management")
}

// doAuth sends one Auth request.
func doAuth(ctx context.Context, c pb.AuthClient, req proto.Message) (proto.Message, error) {
	switch r := req.(type) {
	case *pb.AuthEnableRequest:
		return c.AuthEnable(ctx, r)
	case *pb.AuthDisableRequest:
		return c.AuthDisable(ctx, r)
	case *pb.AuthStatusRequest:
		return c.AuthStatus(ctx, r)
	case *pb.AuthenticateRequest:
		resp, err := c.Authenticate(ctx, r)
		if err == nil {
			resp.Token = "<token>"
		}
		return resp, err
	case *pb.AuthUserAddRequest:
		return c.UserAdd(ctx, r)
	case *pb.AuthUserGetRequest:
		return c.UserGet(ctx, r)
	case *pb.AuthUserListRequest:
		return c.UserList(ctx, r)
	case *pb.AuthUserDeleteRequest:
		return c.UserDelete(ctx, r)
	case *pb.AuthUserChangePasswordRequest:
		return c.UserChangePassword(ctx, r)
	case *pb.AuthUserGrantRoleRequest:
		return c.UserGrantRole(ctx, r)
	case *pb.AuthUserRevokeRoleRequest:
		return c.UserRevokeRole(ctx, r)
	case *pb.AuthRoleAddRequest:
		return c.RoleAdd(ctx, r)
	case *pb.AuthRoleGetRequest:
		return c.RoleGet(ctx, r)
	case *pb.AuthRoleListRequest:
		return c.RoleList(ctx, r)
	case *pb.AuthRoleDeleteRequest:
		return c.RoleDelete(ctx, r)
	case *pb.AuthRoleGrantPermissionRequest:
		return c.RoleGrantPermission(ctx, r)
	case *pb.AuthRoleRevokePermissionRequest:
		return c.RoleRevokePermission(ctx, r)
	}
	return nil, fmt.Errorf("doAuth: %T", req)
}

// matrixUsers have one role each, granting one permission type on a key
// ("k"), a prefix ("p/") and everything from a key on ("z").
var matrixUsers = map[string]authpb.Permission_Type{
	"reader": authpb.Permission_READ,
	"writer": authpb.Permission_WRITE,
	"rw":     authpb.Permission_READWRITE,
}

// setupMatrix creates the matrix users on both servers, a lease of root's
// with a key attached, and enables auth; every user then logs in.
func setupMatrix(t *testing.T, ref, sut *authTarget) {
	t.Helper()
	ctx := t.Context()
	for _, tg := range []*authTarget{ref, sut} {
		must := func(_ proto.Message, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: setup: %v", tg.name, err)
			}
		}
		must(tg.auth.UserAdd(ctx, &pb.AuthUserAddRequest{Name: "root", Password: "pw"}))
		must(tg.auth.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}))
		for user, typ := range matrixUsers {
			must(tg.auth.UserAdd(ctx, &pb.AuthUserAddRequest{Name: user, Password: "pw"}))
			must(tg.auth.RoleAdd(ctx, &pb.AuthRoleAddRequest{Name: user}))
			for _, p := range [][2]string{{"k", ""}, {"p/", "p0"}, {"z", "\x00"}} {
				must(tg.auth.RoleGrantPermission(ctx, &pb.AuthRoleGrantPermissionRequest{Name: user,
					Perm: &authpb.Permission{PermType: typ, Key: []byte(p[0]), RangeEnd: []byte(p[1])}}))
			}
			must(tg.auth.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: user, Role: user}))
		}
		must(tg.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 100, TTL: 600}))
		must(tg.kv.Put(ctx, &pb.PutRequest{Key: []byte("p/leased"), Lease: 100}))
		must(tg.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 200, TTL: 600}))
		must(tg.kv.Put(ctx, &pb.PutRequest{Key: []byte("other"), Lease: 200}))
		must(tg.auth.AuthEnable(ctx, &pb.AuthEnableRequest{}))
		if err := tg.login(ctx, "root", "pw"); err != nil {
			t.Fatal(err)
		}
		for user := range matrixUsers {
			if err := tg.login(ctx, user, "pw"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// keyRanges are the keys and ranges every request kind is tried on.
var keyRanges = [][2]string{
	{"k", ""}, {"k", "k\x00"}, {"k", "l"}, {"j", ""},
	{"p/a", ""}, {"p/", "p0"}, {"p/", "p1"}, {"p", "p0"}, {"p/a", "p/b"},
	{"z", ""}, {"zz", ""}, {"z", "\x00"}, {"y", "\x00"}, {"\x00", "\x00"},
	{"p/b", "p/a"}, {"q", "q"},
}

func rangeOp(key, end []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: key, RangeEnd: end}}}
}

func putOp(key []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key, Value: []byte("t")}}}
}

func deleteOp(key, end []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: key, RangeEnd: end}}}
}

// watchCall opens a watch stream, creates one watcher and returns its first
// response (created, or canceled with etcd's reason).
func watchCall(name, user string, key, end []byte) authCall {
	return authCall{name: name, user: user, do: func(ctx context.Context, a *authTarget) (proto.Message, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ws, err := a.watch.Watch(ctx)
		if err != nil {
			return nil, err
		}
		err = ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: key, RangeEnd: end}}})
		if err != nil {
			return nil, err
		}
		resp, err := ws.Recv()
		if err != nil {
			return nil, err
		}
		resp.Header = nil
		return resp, nil
	}}
}

// keepAliveCall sends one keepalive and returns the answer (the TTL left
// is cleared: it counts down in wall-clock time).
func keepAliveCall(name, user string, id int64) authCall {
	return authCall{name: name, user: user, do: func(ctx context.Context, a *authTarget) (proto.Message, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ka, err := a.lease.LeaseKeepAlive(ctx)
		if err != nil {
			return nil, err
		}
		if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
			return nil, err
		}
		resp, err := ka.Recv()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("stream ended")
		}
		if err != nil {
			return nil, err
		}
		resp.Header = nil
		return resp, nil
	}}
}

// TestAuthEnforcementMatrix makes every request kind on every key and range
// as users holding each permission type (and as root and as nobody), on etcd
// and meshkv, and compares the answers.
func TestAuthEnforcementMatrix(t *testing.T) {
	ref, sut := startAuthPair(t)
	setupMatrix(t, ref, sut)
	users := []string{"", "root", "reader", "writer", "rw"}
	var calls []authCall
	for _, user := range users {
		for _, kr := range keyRanges {
			key, end := []byte(kr[0]), []byte(kr[1])
			sfx := fmt.Sprintf(" [%q,%q)", kr[0], kr[1])
			kv := func(name string, f func(context.Context, pb.KVClient) (proto.Message, error)) {
				calls = append(calls, kvCall(name+sfx, user, f))
			}
			kv("range", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
				return rpc(c.Range(ctx, &pb.RangeRequest{Key: key, RangeEnd: end}))
			})
			kv("serializable range", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
				return rpc(c.Range(ctx, &pb.RangeRequest{Key: key, RangeEnd: end, Serializable: true}))
			})
			kv("txn compare", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
				return rpc(c.Txn(ctx, &pb.TxnRequest{Compare: []*pb.Compare{{Key: key, RangeEnd: end, Target: pb.Compare_VERSION}}}))
			})
			kv("txn range", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
				return rpc(c.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{rangeOp(key, end)}}))
			})
			kv("nested txn", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
				return rpc(c.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{
					RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{rangeOp(key, end)}}}}}}))
			})
			kv("txn delete in the failure branch", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
				return rpc(c.Txn(ctx, &pb.TxnRequest{Failure: []*pb.RequestOp{deleteOp(key, end)}}))
			})
			kv("delete prev", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
				return rpc(c.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: key, RangeEnd: end, PrevKv: true}))
			})
			kv("delete", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
				return rpc(c.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: key, RangeEnd: end}))
			})
			calls = append(calls, watchCall("watch"+sfx, user, key, end))
			if len(end) == 0 {
				kv("put", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
					return rpc(c.Put(ctx, &pb.PutRequest{Key: key, Value: []byte(user)}))
				})
				kv("put prev", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
					return rpc(c.Put(ctx, &pb.PutRequest{Key: key, Value: []byte(user), PrevKv: true}))
				})
				kv("put on the p/ lease", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
					return rpc(c.Put(ctx, &pb.PutRequest{Key: key, Lease: 100}))
				})
				kv("txn put", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
					return rpc(c.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{putOp(key)}}))
				})
			}
		}
		lease := func(name string, f func(context.Context, pb.LeaseClient) (proto.Message, error)) {
			calls = append(calls, leaseCall(name, user, f))
		}
		calls = append(calls, errOnly(kvCall("compact", user, func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
			return rpc(c.Compact(ctx, &pb.CompactionRequest{Revision: 1}))
		})))
		lease("ttl with keys of the p/ lease", func(ctx context.Context, c pb.LeaseClient) (proto.Message, error) {
			r, err := c.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 100, Keys: true})
			if err == nil {
				r.TTL = 0
			}
			return rpc(r, err)
		})
		lease("ttl with keys of the other lease", func(ctx context.Context, c pb.LeaseClient) (proto.Message, error) {
			r, err := c.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 200, Keys: true})
			if err == nil {
				r.TTL = 0
			}
			return rpc(r, err)
		})
		lease("ttl without keys", func(ctx context.Context, c pb.LeaseClient) (proto.Message, error) {
			r, err := c.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 200})
			if err == nil {
				r.TTL = 0
			}
			return rpc(r, err)
		})
		lease("leases", func(ctx context.Context, c pb.LeaseClient) (proto.Message, error) {
			return rpc(c.LeaseLeases(ctx, &pb.LeaseLeasesRequest{}))
		})
		lease("grant", func(ctx context.Context, c pb.LeaseClient) (proto.Message, error) {
			return rpc(c.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 300, TTL: 600}))
		})
		lease("revoke the granted lease", func(ctx context.Context, c pb.LeaseClient) (proto.Message, error) {
			return rpc(c.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 300}))
		})
		lease("revoke the other lease", func(ctx context.Context, c pb.LeaseClient) (proto.Message, error) {
			return rpc(c.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 200}))
		})
		calls = append(calls, keepAliveCall("keepalive of the p/ lease", user, 100))
		maint := func(name string, f func(context.Context, pb.MaintenanceClient) (proto.Message, error)) {
			calls = append(calls, maintCall(name, user, f))
		}
		maint("status", func(ctx context.Context, c pb.MaintenanceClient) (proto.Message, error) {
			return rpc(c.Status(ctx, &pb.StatusRequest{}))
		})
		maint("alarm get", func(ctx context.Context, c pb.MaintenanceClient) (proto.Message, error) {
			return rpc(c.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET}))
		})
		maint("hash kv", func(ctx context.Context, c pb.MaintenanceClient) (proto.Message, error) {
			return rpc(c.HashKV(ctx, &pb.HashKVRequest{}))
		})
		maint("defragment", func(ctx context.Context, c pb.MaintenanceClient) (proto.Message, error) {
			return rpc(c.Defragment(ctx, &pb.DefragmentRequest{}))
		})
		calls = append(calls, clusterCall("member list", user, func(ctx context.Context, c pb.ClusterClient) (proto.Message, error) {
			return rpc(c.MemberList(ctx, &pb.MemberListRequest{}))
		}))
	}
	kinds := compareCalls(t, ref, sut, calls)
	wantKinds(t, kinds, "ok", "permission denied", "user name is empty")
}

// jwtKeyFiles writes an ECDSA P-256 key pair for JWT signing.
func jwtKeyFiles(t *testing.T) (pub, priv string) {
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

// TestAuthOldRevision uses JWT tokens, which carry the auth revision they
// were issued at: after any change of the auth state, requests with an
// older token are refused with etcd's "revision of auth store is old", on
// reads, writes (checked when applied) and watches alike.
func TestAuthOldRevision(t *testing.T) {
	pub, priv := jwtKeyFiles(t)
	ref, sut := startAuthPair(t, "jwt,pub-key="+pub+",priv-key="+priv+",sign-method=ES256,ttl=10m")
	setupMatrix(t, ref, sut)
	rw := func(name string, f func(context.Context, pb.KVClient) (proto.Message, error)) authCall {
		return kvCall(name, "rw", f)
	}
	get := rw("get k", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
		return rpc(c.Range(ctx, &pb.RangeRequest{Key: []byte("k")}))
	})
	put := rw("put k", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
		return rpc(c.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}))
	})
	txn := rw("txn on k", func(ctx context.Context, c pb.KVClient) (proto.Message, error) {
		return rpc(c.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{putOp([]byte("k"))}}))
	})
	watch := watchCall("watch k", "rw", []byte("k"), nil)
	bump := authCall{name: "root adds a role", user: "root", do: func(ctx context.Context, a *authTarget) (proto.Message, error) {
		return rpc(a.auth.RoleAdd(ctx, &pb.AuthRoleAddRequest{Name: "bump"}))
	}}
	kinds := compareCalls(t, ref, sut, []authCall{get, put, txn, watch, bump, get, put, txn, watch})
	wantKinds(t, kinds, "ok", "revision of auth store is old")
	for _, tg := range []*authTarget{ref, sut} {
		if err := tg.login(t.Context(), "rw", "pw"); err != nil {
			t.Fatal(err)
		}
	}
	compareCalls(t, ref, sut, []authCall{get, put, txn, watch})
}
