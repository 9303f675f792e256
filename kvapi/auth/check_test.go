package auth

import (
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// fakeLeases maps lease ids to their keys.
type fakeLeases map[int64][]string

func (f fakeLeases) LeaseKeys(id int64) ([][]byte, bool) {
	ks, ok := f[id]
	if !ok {
		return nil, false
	}
	out := make([][]byte, len(ks))
	for i, k := range ks {
		out[i] = []byte(k)
	}
	return out, true
}

// enabledStore returns a store with auth enabled, root, and user u holding
// role r: read on "r/" prefix, write on "w/" prefix, readwrite on key "k"
// and on everything from "z".
func enabledStore(t *testing.T) *Store {
	t.Helper()
	s := newTestStore(t, Config{})
	addUser(t, s, "root", "root")
	addUser(t, s, "u", "u")
	grantRole := func(u, r string) {
		t.Helper()
		must[*pb.AuthUserGrantRoleResponse](t)(s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: u, Role: r}))
	}
	must[*pb.AuthRoleAddResponse](t)(s.RoleAdd(&pb.AuthRoleAddRequest{Name: "root"}))
	must[*pb.AuthRoleAddResponse](t)(s.RoleAdd(&pb.AuthRoleAddRequest{Name: "r"}))
	for _, p := range []*authpb.Permission{
		{Key: []byte("r/"), RangeEnd: []byte("r0"), PermType: authpb.Permission_READ},
		{Key: []byte("w/"), RangeEnd: []byte("w0"), PermType: authpb.Permission_WRITE},
		{Key: []byte("k"), PermType: authpb.Permission_READWRITE},
		{Key: []byte("z"), RangeEnd: []byte{0}, PermType: authpb.Permission_READWRITE},
	} {
		must[*pb.AuthRoleGrantPermissionResponse](t)(s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: p}))
	}
	grantRole("root", "root")
	grantRole("u", "r")
	must[*pb.AuthEnableResponse](t)(s.AuthEnable())
	return s
}

func TestKeyChecks(t *testing.T) {
	s := enabledStore(t)
	c := s.Checker()
	u := &AuthInfo{Username: "u", Revision: c.Revision()}
	b := func(x string) []byte { return []byte(x) }
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"read r/a", c.IsRangePermitted(u, b("r/a"), nil), nil},
		{"read r/ prefix", c.IsRangePermitted(u, b("r/"), b("r0")), nil},
		{"read r/ and more", c.IsRangePermitted(u, b("r/"), b("r1")), ErrPermissionDenied},
		{"write r/a", c.IsPutPermitted(u, b("r/a")), ErrPermissionDenied},
		{"write w/a", c.IsPutPermitted(u, b("w/a")), nil},
		{"read w/a", c.IsRangePermitted(u, b("w/a"), nil), ErrPermissionDenied},
		{"delete w/ prefix", c.IsDeleteRangePermitted(u, b("w/"), b("w0")), nil},
		{"read k", c.IsRangePermitted(u, b("k"), nil), nil},
		{"write k", c.IsPutPermitted(u, b("k")), nil},
		{"read k prefix", c.IsRangePermitted(u, b("k"), b("l")), ErrPermissionDenied},
		{"read from z", c.IsRangePermitted(u, b("z"), []byte{0}), nil},
		{"read from y", c.IsRangePermitted(u, b("y"), []byte{0}), ErrPermissionDenied},
		{"read everything", c.IsRangePermitted(u, []byte{0}, []byte{0}), ErrPermissionDenied},
		{"no user", c.IsRangePermitted(nil, b("k"), nil), ErrUserEmpty},
		{"revision 0", c.IsRangePermitted(&AuthInfo{Username: "u"}, b("k"), nil), ErrUserEmpty},
		{"old revision", c.IsRangePermitted(&AuthInfo{Username: "u", Revision: c.Revision() - 1}, b("k"), nil), ErrAuthOldRevision},
		{"newer revision", c.IsRangePermitted(&AuthInfo{Username: "u", Revision: c.Revision() + 1}, b("k"), nil), nil},
		{"unknown user", c.IsRangePermitted(&AuthInfo{Username: "x", Revision: c.Revision()}, b("k"), nil), ErrPermissionDenied},
		{"root", c.IsDeleteRangePermitted(&AuthInfo{Username: "root", Revision: c.Revision()}, []byte{0}, []byte{0}), nil},
		{"member itself", c.IsDeleteRangePermitted(RootInfo(), []byte{0}, []byte{0}), nil},
		{"admin: user", c.IsAdminPermitted(u), ErrPermissionDenied},
		{"admin: root at an old revision", c.IsAdminPermitted(&AuthInfo{Username: "root", Revision: 1}), nil},
		{"admin: nobody", c.IsAdminPermitted(nil), ErrUserEmpty},
		{"admin: unknown user", c.IsAdminPermitted(&AuthInfo{Username: "x", Revision: 9}), ErrUserNotFound},
		{"require credentials", c.RequireAuthInfo(nil), ErrUserEmpty},
		{"user gets itself", c.CheckUserGet(u, "u"), nil},
		{"user gets root", c.CheckUserGet(u, "root"), ErrPermissionDenied},
		{"nobody gets the empty name", c.CheckUserGet(nil, ""), nil},
		{"user gets its role", c.CheckRoleGet(u, "r"), nil},
		{"user gets root role", c.CheckRoleGet(u, "root"), ErrPermissionDenied},
	}
	for _, cs := range cases {
		if !errors.Is(cs.err, cs.want) || (cs.want == nil && cs.err != nil) {
			t.Errorf("%s: %v, want %v", cs.name, cs.err, cs.want)
		}
	}

	must[*pb.AuthDisableResponse](t)(s.AuthDisable())
	off := s.Checker()
	if err := off.IsPutPermitted(nil, b("anything")); err != nil {
		t.Errorf("disabled: %v", err)
	}
	if err := off.IsAdminPermitted(nil); err != nil {
		t.Errorf("disabled admin: %v", err)
	}
	if err := c.IsPutPermitted(nil, b("k")); !errors.Is(err, ErrUserEmpty) {
		t.Errorf("a checker keeps its version: %v", err)
	}
}

func TestRequestChecks(t *testing.T) {
	s := enabledStore(t)
	c := s.Checker()
	u := &AuthInfo{Username: "u", Revision: c.Revision()}
	root := &AuthInfo{Username: "root", Revision: c.Revision()}
	leases := fakeLeases{1: {"w/a", "k"}, 2: {"w/a", "r/a"}, 3: nil}
	put := func(key string, lease int64, prev bool) *pb.PutRequest {
		return &pb.PutRequest{Key: []byte(key), Lease: lease, PrevKv: prev}
	}
	op := func(r any) *pb.RequestOp {
		switch r := r.(type) {
		case *pb.PutRequest:
			return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: r}}
		case *pb.RangeRequest:
			return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
		case *pb.DeleteRangeRequest:
			return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: r}}
		case *pb.TxnRequest:
			return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: r}}
		}
		panic("op")
	}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"put", c.CheckPut(u, put("w/a", 0, false), leases), nil},
		{"put with prev_kv, no read", c.CheckPut(u, put("w/a", 0, true), leases), ErrPermissionDenied},
		{"put k with prev_kv", c.CheckPut(u, put("k", 0, true), leases), nil},
		{"put under a lease on writable keys", c.CheckPut(u, put("w/b", 1, false), leases), nil},
		{"put under a lease on a read-only key", c.CheckPut(u, put("w/b", 2, false), leases), ErrPermissionDenied},
		{"put under a lease without keys", c.CheckPut(u, put("w/b", 3, false), leases), nil},
		{"put under an unknown lease", c.CheckPut(u, put("w/b", 9, false), leases), nil},
		{"root puts under any lease", c.CheckPut(root, put("w/b", 2, false), leases), nil},
		{"revoke lease 1", c.CheckLeaseWrite(u, 1, leases), nil},
		{"revoke lease 2", c.CheckLeaseWrite(u, 2, leases), ErrPermissionDenied},
		{"revoke lease 2 as nobody", c.CheckLeaseWrite(nil, 2, leases), ErrUserEmpty},
		{"revoke lease 3 as nobody", c.CheckLeaseWrite(nil, 3, leases), nil},
		{"ttl keys of lease 1", c.CheckLeaseRead(u, 1, leases), ErrPermissionDenied},
		{"ttl keys of lease 2 as root", c.CheckLeaseRead(root, 2, leases), nil},
		{"leases", c.CheckLeases(u, []int64{3}, leases), nil},
		{"leases with unreadable keys", c.CheckLeases(u, []int64{3, 1}, leases), ErrPermissionDenied},
		{"leases as nobody", c.CheckLeases(nil, nil, leases), ErrUserEmpty},
		{"delete w/ prefix", c.CheckDeleteRange(u, &pb.DeleteRangeRequest{Key: []byte("w/"), RangeEnd: []byte("w0")}), nil},
		{"delete w/ prefix with prev_kv", c.CheckDeleteRange(u, &pb.DeleteRangeRequest{Key: []byte("w/"), RangeEnd: []byte("w0"), PrevKv: true}), ErrPermissionDenied},
		{"txn compare unreadable", c.CheckTxn(u, &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("w/a")}}}, leases), ErrPermissionDenied},
		{"txn compare readable", c.CheckTxn(u, &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("r/a")}}}, leases), nil},
		{"txn compare range", c.CheckTxn(u, &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("r/"), RangeEnd: []byte("r1")}}}, leases), ErrPermissionDenied},
		{"txn: failure branch is checked too", c.CheckTxn(u, &pb.TxnRequest{
			Success: []*pb.RequestOp{op(put("w/a", 0, false))},
			Failure: []*pb.RequestOp{op(put("r/a", 0, false))},
		}, leases), ErrPermissionDenied},
		{"txn: range op", c.CheckTxn(u, &pb.TxnRequest{Success: []*pb.RequestOp{op(&pb.RangeRequest{Key: []byte("r/x")})}}, leases), nil},
		{"txn: delete op with prev_kv", c.CheckTxn(u, &pb.TxnRequest{Success: []*pb.RequestOp{op(&pb.DeleteRangeRequest{Key: []byte("k"), PrevKv: true})}}, leases), nil},
		{"txn: nested txn", c.CheckTxn(u, &pb.TxnRequest{Success: []*pb.RequestOp{op(&pb.TxnRequest{
			Failure: []*pb.RequestOp{op(&pb.DeleteRangeRequest{Key: []byte("r/a")})},
		})}}, leases), ErrPermissionDenied},
		{"txn: nested txn compare", c.CheckTxn(u, &pb.TxnRequest{Success: []*pb.RequestOp{op(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("z/1")}},
		})}}, leases), nil},
		{"txn: empty op", c.CheckTxn(u, &pb.TxnRequest{Success: []*pb.RequestOp{{}}}, leases), nil},
		{"txn as nobody", c.CheckTxn(nil, &pb.TxnRequest{}, leases), nil},
		{"txn as nobody with a compare", c.CheckTxn(nil, &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("k")}}}, leases), ErrUserEmpty},
	}
	for _, cs := range cases {
		if !errors.Is(cs.err, cs.want) || (cs.want == nil && cs.err != nil) {
			t.Errorf("%s: %v, want %v", cs.name, cs.err, cs.want)
		}
	}
}

// TestPermissionChangesApply checks that each change of roles or
// permissions reaches the users it affects.
func TestPermissionChangesApply(t *testing.T) {
	s := enabledStore(t)
	ai := func() *AuthInfo { return &AuthInfo{Username: "u", Revision: s.Revision()} }
	k := []byte("new/key")
	if err := s.Checker().IsPutPermitted(ai(), k); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("before grant: %v", err)
	}
	must[*pb.AuthRoleGrantPermissionResponse](t)(s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{
		Name: "r", Perm: &authpb.Permission{Key: []byte("new/"), RangeEnd: []byte("new0"), PermType: authpb.Permission_WRITE}}))
	if err := s.Checker().IsPutPermitted(ai(), k); err != nil {
		t.Fatalf("after grant: %v", err)
	}
	must[*pb.AuthUserRevokeRoleResponse](t)(s.UserRevokeRole(&pb.AuthUserRevokeRoleRequest{Name: "u", Role: "r"}))
	if err := s.Checker().IsPutPermitted(ai(), k); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("after revoking the role: %v", err)
	}
	must[*pb.AuthUserGrantRoleResponse](t)(s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "u", Role: "root"}))
	if err := s.Checker().IsAdminPermitted(ai()); err != nil {
		t.Fatalf("after granting root: %v", err)
	}
}
