package auth

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"golang.org/x/crypto/bcrypt"
)

func newTestStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.MinCost
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// addUser adds a user with a password hashed as the proposer hashes it.
func addUser(t *testing.T, s *Store, name, password string) {
	t.Helper()
	h, err := s.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UserAdd(&pb.AuthUserAddRequest{Name: name, HashedPassword: h}); err != nil {
		t.Fatalf("UserAdd(%s): %v", name, err)
	}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// step is one auth request applied to a store, with the error and auth
// revision etcd gives for it.
type step struct {
	name    string
	do      func(s *Store) error
	wantErr error
	wantRev uint64
}

func TestAuthAPISequence(t *testing.T) {
	s := newTestStore(t, Config{})
	hash := func(pw string) string { return must[string](t)(s.HashPassword(pw)) }
	steps := []step{
		{"fresh status", func(s *Store) error {
			if st := s.AuthStatus(); st.Enabled || st.AuthRevision != 1 {
				t.Errorf("fresh status %v", st)
			}
			return nil
		}, nil, 1},
		{"enable without root", func(s *Store) error { _, err := s.AuthEnable(); return err }, ErrRootUserNotExist, 1},
		{"add root", func(s *Store) error {
			_, err := s.UserAdd(&pb.AuthUserAddRequest{Name: "root", HashedPassword: hash("rootpw")})
			return err
		}, nil, 2},
		{"add root again", func(s *Store) error {
			_, err := s.UserAdd(&pb.AuthUserAddRequest{Name: "root", HashedPassword: hash("x")})
			return err
		}, ErrUserAlreadyExist, 2},
		{"add empty user", func(s *Store) error { _, err := s.UserAdd(&pb.AuthUserAddRequest{}); return err }, ErrUserEmpty, 2},
		{"enable without root role", func(s *Store) error { _, err := s.AuthEnable(); return err }, ErrRootRoleNotExist, 2},
		{"grant missing role", func(s *Store) error {
			_, err := s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "root", Role: "nope"})
			return err
		}, ErrRoleNotFound, 2},
		{"grant role to missing user", func(s *Store) error {
			_, err := s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "nobody", Role: "root"})
			return err
		}, ErrUserNotFound, 2},
		{"grant root role before it exists", func(s *Store) error {
			_, err := s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "root", Role: "root"})
			return err
		}, nil, 3},
		{"grant root role again: no change", func(s *Store) error {
			_, err := s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "root", Role: "root"})
			return err
		}, nil, 3},
		{"enable", func(s *Store) error { _, err := s.AuthEnable(); return err }, nil, 3},
		{"enable again", func(s *Store) error { _, err := s.AuthEnable(); return err }, nil, 3},
		{"delete root while enabled", func(s *Store) error {
			_, err := s.UserDelete(&pb.AuthUserDeleteRequest{Name: "root"})
			return err
		}, ErrInvalidAuthMgmt, 3},
		{"revoke root from root while enabled", func(s *Store) error {
			_, err := s.UserRevokeRole(&pb.AuthUserRevokeRoleRequest{Name: "root", Role: "root"})
			return err
		}, ErrInvalidAuthMgmt, 3},
		{"add role root", func(s *Store) error { _, err := s.RoleAdd(&pb.AuthRoleAddRequest{Name: "root"}); return err }, nil, 4},
		{"delete role root while enabled", func(s *Store) error {
			_, err := s.RoleDelete(&pb.AuthRoleDeleteRequest{Role: "root"})
			return err
		}, ErrInvalidAuthMgmt, 4},
		{"add empty role", func(s *Store) error { _, err := s.RoleAdd(&pb.AuthRoleAddRequest{}); return err }, ErrRoleEmpty, 4},
		{"add role r", func(s *Store) error { _, err := s.RoleAdd(&pb.AuthRoleAddRequest{Name: "r"}); return err }, nil, 5},
		{"add role r again", func(s *Store) error { _, err := s.RoleAdd(&pb.AuthRoleAddRequest{Name: "r"}); return err }, ErrRoleAlreadyExist, 5},
		{"grant nil permission", func(s *Store) error {
			_, err := s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r"})
			return err
		}, ErrPermissionNotGiven, 5},
		{"grant inverted range", func(s *Store) error {
			_, err := s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{Key: []byte("b"), RangeEnd: []byte("a")}})
			return err
		}, ErrInvalidAuthMgmt, 5},
		{"grant empty key", func(s *Store) error {
			_, err := s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{}})
			return err
		}, ErrInvalidAuthMgmt, 5},
		{"grant to missing role", func(s *Store) error {
			_, err := s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "x", Perm: &authpb.Permission{Key: []byte("a")}})
			return err
		}, ErrRoleNotFound, 5},
		{"grant z", func(s *Store) error {
			_, err := s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{Key: []byte("z"), PermType: authpb.Permission_READ}})
			return err
		}, nil, 6},
		{"grant a..c", func(s *Store) error {
			_, err := s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{Key: []byte("a"), RangeEnd: []byte("c"), PermType: authpb.Permission_WRITE}})
			return err
		}, nil, 7},
		{"regrant a..c as readwrite", func(s *Store) error {
			_, err := s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{Key: []byte("a"), RangeEnd: []byte("c"), PermType: authpb.Permission_READWRITE}})
			return err
		}, nil, 8},
		{"role get r", func(s *Store) error {
			resp, err := s.RoleGet(&pb.AuthRoleGetRequest{Role: "r"})
			if err == nil {
				want := []string{"READWRITE a c", "READ z "}
				var got []string
				for _, p := range resp.Perm {
					got = append(got, p.PermType.String()+" "+string(p.Key)+" "+string(p.RangeEnd))
				}
				if !slices.Equal(got, want) {
					t.Errorf("RoleGet r = %q, want %q", got, want)
				}
			}
			return err
		}, nil, 8},
		{"role get root", func(s *Store) error {
			resp, err := s.RoleGet(&pb.AuthRoleGetRequest{Role: "root"})
			if err == nil && (len(resp.Perm) != 1 || string(resp.Perm[0].RangeEnd) != "\x00" || len(resp.Perm[0].Key) != 0 || resp.Perm[0].PermType != authpb.Permission_READWRITE) {
				t.Errorf("RoleGet root = %v", resp.Perm)
			}
			return err
		}, nil, 8},
		{"revoke permission not granted", func(s *Store) error {
			_, err := s.RoleRevokePermission(&pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("a")})
			return err
		}, ErrPermissionNotGranted, 8},
		{"revoke permission of missing role", func(s *Store) error {
			_, err := s.RoleRevokePermission(&pb.AuthRoleRevokePermissionRequest{Role: "x", Key: []byte("a")})
			return err
		}, ErrRoleNotFound, 8},
		{"revoke z", func(s *Store) error {
			_, err := s.RoleRevokePermission(&pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("z")})
			return err
		}, nil, 9},
		{"add alice", func(s *Store) error {
			_, err := s.UserAdd(&pb.AuthUserAddRequest{Name: "alice", HashedPassword: hash("pw")})
			return err
		}, nil, 10},
		{"add bob without password", func(s *Store) error {
			_, err := s.UserAdd(&pb.AuthUserAddRequest{Name: "bob", Options: &authpb.UserAddOptions{NoPassword: true}})
			return err
		}, nil, 11},
		{"grant r to alice", func(s *Store) error {
			_, err := s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "alice", Role: "r"})
			return err
		}, nil, 12},
		{"revoke role not granted", func(s *Store) error {
			_, err := s.UserRevokeRole(&pb.AuthUserRevokeRoleRequest{Name: "bob", Role: "r"})
			return err
		}, ErrRoleNotGranted, 12},
		{"revoke role of missing user", func(s *Store) error {
			_, err := s.UserRevokeRole(&pb.AuthUserRevokeRoleRequest{Name: "x", Role: "r"})
			return err
		}, ErrUserNotFound, 12},
		{"user list", func(s *Store) error {
			resp, _ := s.UserList(nil)
			if want := []string{"alice", "bob", "root"}; !slices.Equal(resp.Users, want) {
				t.Errorf("UserList = %q, want %q", resp.Users, want)
			}
			return nil
		}, nil, 12},
		{"role list", func(s *Store) error {
			resp, _ := s.RoleList(nil)
			if want := []string{"r", "root"}; !slices.Equal(resp.Roles, want) {
				t.Errorf("RoleList = %q, want %q", resp.Roles, want)
			}
			return nil
		}, nil, 12},
		{"user get alice", func(s *Store) error {
			resp, err := s.UserGet(&pb.AuthUserGetRequest{Name: "alice"})
			if err == nil && !slices.Equal(resp.Roles, []string{"r"}) {
				t.Errorf("UserGet alice roles = %q", resp.Roles)
			}
			return err
		}, nil, 12},
		{"user get missing", func(s *Store) error {
			_, err := s.UserGet(&pb.AuthUserGetRequest{Name: "x"})
			return err
		}, ErrUserNotFound, 12},
		{"change password of missing user", func(s *Store) error {
			_, err := s.UserChangePassword(&pb.AuthUserChangePasswordRequest{Name: "x", HashedPassword: hash("y")})
			return err
		}, ErrUserNotFound, 12},
		{"change alice's password", func(s *Store) error {
			_, err := s.UserChangePassword(&pb.AuthUserChangePasswordRequest{Name: "alice", HashedPassword: hash("new")})
			return err
		}, nil, 13},
		{"check alice's new password", func(s *Store) error {
			if _, err := s.CheckPassword("alice", "pw"); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("old password: %v, want ErrAuthFailed", err)
			}
			_, err := s.CheckPassword("alice", "new")
			return err
		}, nil, 13},
		{"check bob's password", func(s *Store) error { _, err := s.CheckPassword("bob", ""); return err }, ErrNoPasswordUser, 13},
		{"check missing user", func(s *Store) error { _, err := s.CheckPassword("x", ""); return err }, ErrAuthFailed, 13},
		{"authenticate bob", func(s *Store) error {
			_, err := s.Authenticate(20, &pb.InternalAuthenticateRequest{Name: "bob"})
			return err
		}, ErrAuthFailed, 13},
		{"delete role r: alice loses it", func(s *Store) error {
			if _, err := s.RoleDelete(&pb.AuthRoleDeleteRequest{Role: "r"}); err != nil {
				return err
			}
			if resp, _ := s.UserGet(&pb.AuthUserGetRequest{Name: "alice"}); len(resp.Roles) != 0 {
				t.Errorf("alice keeps roles %q", resp.Roles)
			}
			return nil
		}, nil, 14},
		{"delete missing role", func(s *Store) error {
			_, err := s.RoleDelete(&pb.AuthRoleDeleteRequest{Role: "r"})
			return err
		}, ErrRoleNotFound, 14},
		{"delete missing user", func(s *Store) error {
			_, err := s.UserDelete(&pb.AuthUserDeleteRequest{Name: "x"})
			return err
		}, ErrUserNotFound, 14},
		{"disable", func(s *Store) error { _, err := s.AuthDisable(); return err }, nil, 15},
		{"disable again", func(s *Store) error { _, err := s.AuthDisable(); return err }, nil, 15},
		{"authenticate while disabled", func(s *Store) error {
			_, err := s.Authenticate(21, &pb.InternalAuthenticateRequest{Name: "alice"})
			return err
		}, ErrAuthNotEnabled, 15},
		{"check password while disabled", func(s *Store) error { _, err := s.CheckPassword("alice", "new"); return err }, ErrAuthNotEnabled, 15},
		{"delete root while disabled", func(s *Store) error {
			_, err := s.UserDelete(&pb.AuthUserDeleteRequest{Name: "root"})
			return err
		}, nil, 16},
		{"delete role root while disabled", func(s *Store) error {
			_, err := s.RoleDelete(&pb.AuthRoleDeleteRequest{Role: "root"})
			return err
		}, nil, 17},
	}
	for _, st := range steps {
		err := st.do(s)
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("%s: err %v, want %v", st.name, err, st.wantErr)
		}
		if got := s.Revision(); got != st.wantRev {
			t.Fatalf("%s: revision %d, want %d", st.name, got, st.wantRev)
		}
	}
}

// TestGrantPermissionOrder checks etcd's quirks: permissions sorted by key
// only, a regrant matching only the first permission with its key.
func TestGrantPermissionOrder(t *testing.T) {
	s := newTestStore(t, Config{})
	must[*pb.AuthRoleAddResponse](t)(s.RoleAdd(&pb.AuthRoleAddRequest{Name: "r"}))
	grant := func(key, end string, typ authpb.Permission_Type) {
		t.Helper()
		must[*pb.AuthRoleGrantPermissionResponse](t)(s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{
			Name: "r", Perm: &authpb.Permission{Key: []byte(key), RangeEnd: []byte(end), PermType: typ}}))
	}
	grant("b", "", authpb.Permission_READ)
	grant("a", "c", authpb.Permission_READ)
	grant("a", "b", authpb.Permission_WRITE)
	grant("a", "b", authpb.Permission_READWRITE) // matches the second "a": appended again
	resp := must[*pb.AuthRoleGetResponse](t)(s.RoleGet(&pb.AuthRoleGetRequest{Role: "r"}))
	var keys []string
	for _, p := range resp.Perm {
		keys = append(keys, string(p.Key))
	}
	if want := []string{"a", "a", "a", "b"}; !slices.Equal(keys, want) {
		t.Fatalf("keys %q, want %q", keys, want)
	}
	must[*pb.AuthRoleRevokePermissionResponse](t)(s.RoleRevokePermission(&pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("a"), RangeEnd: []byte("b")}))
	resp = must[*pb.AuthRoleGetResponse](t)(s.RoleGet(&pb.AuthRoleGetRequest{Role: "r"}))
	if len(resp.Perm) != 2 {
		t.Fatalf("after revoking [a, b): %v, want both copies gone", resp.Perm)
	}
}

func TestGRPCError(t *testing.T) {
	for err, want := range grpcErrors {
		got, ok := GRPCError(err)
		if !ok || got != want {
			t.Errorf("GRPCError(%v) = %v, %v", err, got, ok)
		}
	}
	if got, ok := GRPCError(errors.Join(errors.New("x"), ErrPermissionDenied)); ok {
		t.Errorf("joined error mapped to %v", got)
	}
	if got, _ := GRPCError(wrap(ErrPermissionDenied)); got != rpctypes.ErrGRPCPermissionDenied {
		t.Errorf("wrapped error mapped to %v", got)
	}
	if _, ok := GRPCError(ErrNoPasswordUser); ok {
		t.Error("ErrNoPasswordUser mapped; etcd sends it as Unknown")
	}
}

func wrap(err error) error { return fmt.Errorf("at index 7: %w", err) }

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{SimpleTokenTTL: -1},
		{BcryptCost: 3},
		{BcryptCost: 32},
		{TokenOptions: "magic"},
		{TokenOptions: "jwt,sign-method=none"},
		{TokenOptions: "jwt"},
		{TokenOptions: "jwt,sign-method=RS256,ttl=forever"},
		{TokenOptions: "simple,a"},
		{TokenOptions: "jwt,sign-method=RS256,sign-method=RS256"},
	}
	for _, c := range bad {
		if c.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
	for _, c := range []Config{{}, {TokenOptions: "simple"}, {TokenOptions: "none"}, {BcryptCost: 4}} {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", c, err)
		}
	}
}
