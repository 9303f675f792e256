package auth

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"go.etcd.io/etcd/api/v3/authpb"
)

// Exported is the auth state in etcd's own messages, as etcd's snapshot
// files keep it in their auth buckets: users with their bcrypt password
// hashes, roles with their permissions, whether authentication is enabled,
// and the auth revision.
type Exported struct {
	Enabled  bool
	Revision uint64
	Users    []*authpb.User // sorted by name
	Roles    []*authpb.Role // sorted by name
}

// Export returns the current state as etcd's messages, freshly made: the
// caller may keep and read them while the store goes on. Safe from any
// goroutine.
func (s *Store) Export() Exported {
	st := s.cur.Load()
	e := Exported{Enabled: st.enabled, Revision: st.revision}
	for _, name := range slices.Sorted(maps.Keys(st.users)) {
		u := st.users[name]
		e.Users = append(e.Users, &authpb.User{
			Name:     []byte(u.name),
			Password: bytes.Clone(u.password),
			Roles:    slices.Clone(u.roles),
			Options:  &authpb.UserAddOptions{NoPassword: u.noPassword},
		})
	}
	for _, name := range slices.Sorted(maps.Keys(st.roles)) {
		r := st.roles[name]
		pr := &authpb.Role{Name: []byte(r.name)}
		for _, p := range r.perms {
			pr.KeyPermission = append(pr.KeyPermission, p.toProto())
		}
		e.Roles = append(e.Roles, pr)
	}
	return e
}

// ImportSnapshot turns an exported state (read from an etcd snapshot file)
// into a Snapshot to Restore, checking it as ReadSnapshot checks its input.
// A user's roles are sorted as etcd keeps them; a revision of 0 (older etcd
// files) becomes 1.
func ImportSnapshot(e Exported) (*Snapshot, error) {
	st := newState()
	st.enabled = e.Enabled
	st.revision = max(e.Revision, initialRevision)
	for _, pu := range e.Users {
		if pu == nil {
			continue
		}
		u := &user{
			name:       string(pu.Name),
			password:   bytes.Clone(pu.Password),
			noPassword: pu.GetOptions().GetNoPassword(),
			roles:      slices.Compact(slices.Sorted(slices.Values(pu.Roles))),
		}
		if u.noPassword {
			u.password = nil
		}
		if u.name == "" || st.users[u.name] != nil {
			return nil, fmt.Errorf("%w: bad user %q", ErrCorruptSnapshot, u.name)
		}
		st.users[u.name] = u
	}
	for _, pr := range e.Roles {
		if pr == nil {
			continue
		}
		r := &role{name: string(pr.Name)}
		for _, p := range pr.KeyPermission {
			if p == nil {
				continue
			}
			if p.PermType > authpb.Permission_READWRITE {
				return nil, fmt.Errorf("%w: role %q: permission type %d", ErrCorruptSnapshot, r.name, p.PermType)
			}
			r.perms = append(r.perms, perm{typ: p.PermType, key: bytes.Clone(p.Key), end: bytes.Clone(p.RangeEnd)})
		}
		if r.name == "" || st.roles[r.name] != nil {
			return nil, fmt.Errorf("%w: bad role %q", ErrCorruptSnapshot, r.name)
		}
		st.roles[r.name] = r
	}
	if err := finishState(st); err != nil {
		return nil, err
	}
	return &Snapshot{st: st}, nil
}

// finishState checks a state read from outside and derives each user's
// permissions.
func finishState(st *state) error {
	if st.revision < initialRevision {
		return fmt.Errorf("%w: revision %d", ErrCorruptSnapshot, st.revision)
	}
	if st.enabled {
		if root := st.users[RootUser]; root == nil || !root.hasRole(RootRole) {
			return fmt.Errorf("%w: enabled without a root user holding the root role", ErrCorruptSnapshot)
		}
	}
	for k, u := range st.users {
		st.users[k] = st.withRoles(u, u.roles)
	}
	return nil
}
