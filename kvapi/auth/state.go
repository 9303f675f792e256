package auth

import (
	"bytes"
	"maps"
	"sort"

	"go.etcd.io/etcd/api/v3/authpb"
)

// Names etcd gives special meaning.
const (
	// RootUser is the user that must exist, with RootRole, to enable
	// authentication, and that cannot be deleted while it is enabled.
	RootUser = "root"
	// RootRole grants every permission, including the admin operations
	// (auth management, maintenance, membership, compaction).
	RootRole = "root"
)

// initialRevision is the auth revision of a fresh store, as etcd's: a new
// etcd auth store commits revision 1 before anything else happens.
const initialRevision = 1

// state is one immutable version of the replicated auth state. A change
// builds a new state (sharing the users and roles it does not change) and
// publishes it; readers load the current one without locks.
type state struct {
	enabled  bool
	revision uint64
	users    map[string]*user
	roles    map[string]*role
}

// user is one immutable user.
type user struct {
	name       string
	password   []byte   // bcrypt hash; nil for a user without a password
	noPassword bool     // created with UserAddOptions.NoPassword
	roles      []string // sorted, no duplicates
	root       bool     // roles holds RootRole
	// perms merges the permissions of the user's existing roles.
	perms *permSet
}

// role is one immutable role.
type role struct {
	name  string
	perms []perm // sorted by key (etcd's order; see grantPerm)
}

// perm is one key permission of a role, as granted: an empty end names the
// single key, "\x00" everything from key on, anything else [key, end).
type perm struct {
	typ authpb.Permission_Type
	key []byte
	end []byte
}

func newState() *state {
	return &state{revision: initialRevision, users: map[string]*user{}, roles: map[string]*role{}}
}

// clone returns a shallow copy whose maps may be changed; the users and
// roles they hold are shared and must be replaced, not modified.
func (st *state) clone() *state {
	return &state{
		enabled:  st.enabled,
		revision: st.revision,
		users:    maps.Clone(st.users),
		roles:    maps.Clone(st.roles),
	}
}

// hasRole reports whether u holds role r (u.roles is sorted).
func (u *user) hasRole(r string) bool {
	i := sort.SearchStrings(u.roles, r)
	return i < len(u.roles) && u.roles[i] == r
}

// withRoles returns a copy of u holding roles (sorted), its permissions
// merged anew from st's roles.
func (st *state) withRoles(u *user, roles []string) *user {
	nu := *u
	nu.roles = roles
	nu.root = false
	for _, r := range roles {
		if r == RootRole {
			nu.root = true
		}
	}
	nu.perms = st.mergePerms(roles)
	return &nu
}

// mergePerms builds the merged permissions of a set of role names; names of
// roles that do not exist are skipped, as etcd skips them.
func (st *state) mergePerms(roles []string) *permSet {
	var read, write []span
	for _, name := range roles {
		r := st.roles[name]
		if r == nil {
			continue
		}
		for _, p := range r.perms {
			sp := p.span()
			switch p.typ {
			case authpb.Permission_READ:
				read = append(read, sp)
			case authpb.Permission_WRITE:
				write = append(write, sp)
			case authpb.Permission_READWRITE:
				read = append(read, sp)
				write = append(write, sp)
			}
		}
	}
	return &permSet{read: newSpans(read), write: newSpans(write)}
}

// refreshUsersWith recomputes the permissions of every user holding role
// name, after that role changed or vanished.
func (st *state) refreshUsersWith(name string) {
	for k, u := range st.users {
		if u.hasRole(name) {
			st.users[k] = st.withRoles(u, u.roles)
		}
	}
}

// span returns the key interval p covers.
func (p perm) span() span {
	switch {
	case len(p.end) == 0:
		return pointSpan(p.key)
	case isOpenEnded(p.end):
		return span{begin: p.key} // end nil: to the end of the key space
	default:
		return span{begin: p.key, end: p.end}
	}
}

// isOpenEnded reports whether end is "\x00", etcd's "to the end of the key
// space" in ranges and permissions.
func isOpenEnded(end []byte) bool { return len(end) == 1 && end[0] == 0 }

// validPermRange reports whether etcd accepts [key, end) as a permission: a
// non-empty key and either no end (one key), an end above the key, or
// "\x00" (everything from key on).
func validPermRange(key, end []byte) bool {
	if len(key) == 0 {
		return false
	}
	if len(end) == 0 || isOpenEnded(end) {
		return true
	}
	return bytes.Compare(key, end) < 0
}

// toProto returns p as etcd's Permission message (fresh slices).
func (p perm) toProto() *authpb.Permission {
	return &authpb.Permission{PermType: p.typ, Key: bytes.Clone(p.key), RangeEnd: bytes.Clone(p.end)}
}
