package auth

import (
	"bytes"
	"encoding/base64"
	"slices"
	"sort"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"
)

// The apply methods change the replicated state, as etcd's auth store does
// when it applies the same request. They are called on the apply goroutine,
// in log order, after the admin check (CheckAdmin) passed. A method that
// returns an error changes nothing.

// publish makes st the current state, with the revision bumped.
func (s *Store) publish(st *state) {
	st.revision++
	s.cur.Store(st)
}

// AuthEnable enables authentication; the root user must exist and hold the
// root role. Enabling it again changes nothing. The revision stays.
func (s *Store) AuthEnable() (*pb.AuthEnableResponse, error) {
	cur := s.cur.Load()
	if cur.enabled {
		return &pb.AuthEnableResponse{}, nil
	}
	root := cur.users[RootUser]
	if root == nil {
		return nil, ErrRootUserNotExist
	}
	if !root.root {
		return nil, ErrRootRoleNotExist
	}
	st := cur.clone()
	st.enabled = true
	s.tokens.enable()
	s.cur.Store(st)
	s.log.Info("auth: enabled authentication")
	return &pb.AuthEnableResponse{}, nil
}

// AuthDisable disables authentication and drops every simple token.
// Disabling it again changes nothing.
func (s *Store) AuthDisable() (*pb.AuthDisableResponse, error) {
	cur := s.cur.Load()
	if !cur.enabled {
		return &pb.AuthDisableResponse{}, nil
	}
	st := cur.clone()
	st.enabled = false
	s.publish(st)
	s.tokens.disable()
	s.log.Info("auth: disabled authentication")
	return &pb.AuthDisableResponse{}, nil
}

// Grant is a successful authentication: the user and the auth revision it
// happened at. Store.Token turns it into the token the client gets.
type Grant struct {
	User     string
	Revision uint64
	token    string // the simple token registered on apply; "" for JWT
}

// Authenticate applies a password check that the proposing member already
// made (InternalAuthenticateRequest carries no password): it fails if
// authentication was disabled or the user removed meanwhile, and registers
// the simple token "<prefix>.<index>" on this member, index being the log
// index of the request.
func (s *Store) Authenticate(index uint64, r *pb.InternalAuthenticateRequest) (*Grant, error) {
	st := s.cur.Load()
	if !st.enabled {
		return nil, ErrAuthNotEnabled
	}
	u := st.users[r.Name]
	if u == nil || u.noPassword {
		return nil, ErrAuthFailed
	}
	g := &Grant{User: r.Name, Revision: st.revision}
	var err error
	if g.token, err = s.tokens.assign(index, r.SimpleToken, r.Name); err != nil {
		return nil, err
	}
	s.log.Debug("auth: authenticated a user", "user", r.Name)
	return g, nil
}

// password returns the hash a user add or password change stores: the
// hash the proposer made (base64), or, for an entry from a proposer that
// sent the password itself (etcd before 3.5 did), a hash made now.
func (s *Store) password(plain, hashed string) ([]byte, error) {
	if plain != "" && hashed == "" {
		return bcrypt.GenerateFromPassword([]byte(plain), s.cfg.BcryptCost)
	}
	return base64.StdEncoding.DecodeString(hashed)
}

// UserAdd adds a user without roles.
func (s *Store) UserAdd(r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	if r.Name == "" {
		return nil, ErrUserEmpty
	}
	cur := s.cur.Load()
	if cur.users[r.Name] != nil {
		return nil, ErrUserAlreadyExist
	}
	u := &user{name: r.Name, noPassword: r.Options.GetNoPassword(), perms: &permSet{}}
	if !u.noPassword {
		pw, err := s.password(r.Password, r.HashedPassword)
		if err != nil {
			return nil, ErrNoPasswordUser
		}
		u.password = pw
	}
	st := cur.clone()
	st.users[r.Name] = u
	s.publish(st)
	s.log.Info("auth: added a user", "user", r.Name)
	return &pb.AuthUserAddResponse{}, nil
}

// UserDelete deletes a user (not root while authentication is enabled) and
// its simple tokens.
func (s *Store) UserDelete(r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	cur := s.cur.Load()
	if cur.enabled && r.Name == RootUser {
		return nil, ErrInvalidAuthMgmt
	}
	if cur.users[r.Name] == nil {
		return nil, ErrUserNotFound
	}
	st := cur.clone()
	delete(st.users, r.Name)
	s.publish(st)
	s.tokens.invalidateUser(r.Name)
	s.log.Info("auth: deleted a user", "user", r.Name)
	return &pb.AuthUserDeleteResponse{}, nil
}

// UserChangePassword replaces a user's password (a user without a password
// keeps having none) and drops its simple tokens.
func (s *Store) UserChangePassword(r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	cur := s.cur.Load()
	u := cur.users[r.Name]
	if u == nil {
		return nil, ErrUserNotFound
	}
	nu := *u
	nu.password = nil
	if !u.noPassword {
		pw, err := s.password(r.Password, r.HashedPassword)
		if err != nil {
			return nil, ErrNoPasswordUser
		}
		nu.password = pw
	}
	st := cur.clone()
	st.users[r.Name] = &nu
	s.publish(st)
	s.tokens.invalidateUser(r.Name)
	s.log.Info("auth: changed a user's password", "user", r.Name)
	return &pb.AuthUserChangePasswordResponse{}, nil
}

// UserGrantRole grants a role (which must exist, except root) to a user.
// Granting a role the user has changes nothing.
func (s *Store) UserGrantRole(r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	cur := s.cur.Load()
	u := cur.users[r.User]
	if u == nil {
		return nil, ErrUserNotFound
	}
	if r.Role != RootRole && cur.roles[r.Role] == nil {
		return nil, ErrRoleNotFound
	}
	if u.hasRole(r.Role) {
		return &pb.AuthUserGrantRoleResponse{}, nil
	}
	roles := append(slices.Clone(u.roles), r.Role)
	slices.Sort(roles)
	st := cur.clone()
	st.users[r.User] = st.withRoles(u, roles)
	s.publish(st)
	s.log.Info("auth: granted a role to a user", "user", r.User, "role", r.Role)
	return &pb.AuthUserGrantRoleResponse{}, nil
}

// UserRevokeRole revokes a role from a user (not root from root while
// authentication is enabled).
func (s *Store) UserRevokeRole(r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	cur := s.cur.Load()
	if cur.enabled && r.Name == RootUser && r.Role == RootRole {
		return nil, ErrInvalidAuthMgmt
	}
	u := cur.users[r.Name]
	if u == nil {
		return nil, ErrUserNotFound
	}
	if !u.hasRole(r.Role) {
		return nil, ErrRoleNotGranted
	}
	roles := slices.DeleteFunc(slices.Clone(u.roles), func(x string) bool { return x == r.Role })
	st := cur.clone()
	st.users[r.Name] = st.withRoles(u, roles)
	s.publish(st)
	s.log.Info("auth: revoked a role from a user", "user", r.Name, "role", r.Role)
	return &pb.AuthUserRevokeRoleResponse{}, nil
}

// RoleAdd adds a role without permissions.
func (s *Store) RoleAdd(r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	if r.Name == "" {
		return nil, ErrRoleEmpty
	}
	cur := s.cur.Load()
	if cur.roles[r.Name] != nil {
		return nil, ErrRoleAlreadyExist
	}
	st := cur.clone()
	st.roles[r.Name] = &role{name: r.Name}
	s.publish(st)
	s.log.Info("auth: added a role", "role", r.Name)
	return &pb.AuthRoleAddResponse{}, nil
}

// RoleDelete deletes a role (not root while authentication is enabled) and
// revokes it from every user.
func (s *Store) RoleDelete(r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	cur := s.cur.Load()
	if cur.enabled && r.Role == RootRole {
		return nil, ErrInvalidAuthMgmt
	}
	if cur.roles[r.Role] == nil {
		return nil, ErrRoleNotFound
	}
	st := cur.clone()
	delete(st.roles, r.Role)
	for k, u := range st.users {
		if u.hasRole(r.Role) {
			roles := slices.DeleteFunc(slices.Clone(u.roles), func(x string) bool { return x == r.Role })
			st.users[k] = st.withRoles(u, roles)
		}
	}
	s.publish(st)
	s.log.Info("auth: deleted a role", "role", r.Role)
	return &pb.AuthRoleDeleteResponse{}, nil
}

// byKey orders permissions by key only, with sort.Sort, exactly as etcd
// orders them: permissions with equal keys keep the order etcd's sort gives
// them, so RoleGet lists them as etcd does.
type byKey []perm

func (p byKey) Len() int           { return len(p) }
func (p byKey) Less(i, j int) bool { return bytes.Compare(p[i].key, p[j].key) < 0 }
func (p byKey) Swap(i, j int)      { p[i], p[j] = p[j], p[i] }

// RoleGrantPermission grants a permission to a role, or changes the type of
// the permission on the same range. The range must be valid: a key, and an
// end that is empty, above the key, or "\x00".
func (s *Store) RoleGrantPermission(r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	if r.Perm == nil {
		return nil, ErrPermissionNotGiven
	}
	if !validPermRange(r.Perm.Key, r.Perm.RangeEnd) {
		return nil, ErrInvalidAuthMgmt
	}
	cur := s.cur.Load()
	ro := cur.roles[r.Name]
	if ro == nil {
		return nil, ErrRoleNotFound
	}
	perms := slices.Clone(ro.perms)
	// As etcd: only the first permission with the same key is looked at.
	i := sort.Search(len(perms), func(i int) bool { return bytes.Compare(perms[i].key, r.Perm.Key) >= 0 })
	if i < len(perms) && bytes.Equal(perms[i].key, r.Perm.Key) && bytes.Equal(perms[i].end, r.Perm.RangeEnd) {
		perms[i].typ = r.Perm.PermType
	} else {
		perms = append(perms, perm{typ: r.Perm.PermType, key: bytes.Clone(r.Perm.Key), end: bytes.Clone(r.Perm.RangeEnd)})
		sort.Sort(byKey(perms))
	}
	st := cur.clone()
	st.roles[r.Name] = &role{name: ro.name, perms: perms}
	st.refreshUsersWith(r.Name)
	s.publish(st)
	s.log.Info("auth: granted a permission to a role", "role", r.Name,
		"permission", authpb.Permission_Type_name[int32(r.Perm.PermType)])
	return &pb.AuthRoleGrantPermissionResponse{}, nil
}

// RoleRevokePermission revokes the permissions of a role on exactly
// [key, end).
func (s *Store) RoleRevokePermission(r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	cur := s.cur.Load()
	ro := cur.roles[r.Role]
	if ro == nil {
		return nil, ErrRoleNotFound
	}
	perms := slices.DeleteFunc(slices.Clone(ro.perms), func(p perm) bool {
		return bytes.Equal(p.key, r.Key) && bytes.Equal(p.end, r.RangeEnd)
	})
	if len(perms) == len(ro.perms) {
		return nil, ErrPermissionNotGranted
	}
	st := cur.clone()
	st.roles[r.Role] = &role{name: ro.name, perms: slices.Clip(perms)}
	st.refreshUsersWith(r.Role)
	s.publish(st)
	s.log.Info("auth: revoked a permission from a role", "role", r.Role)
	return &pb.AuthRoleRevokePermissionResponse{}, nil
}
