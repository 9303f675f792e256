package kvapi

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshkv/meshkv/kvapi/auth"
	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// Auth in the replicated log
//
// Auth requests are etcd's InternalRaftRequest fields (AuthEnable,
// AuthUserAdd, ..., Authenticate). Client writes that etcd checks when it
// applies them (Put, DeleteRange, Txn, and a client's LeaseRevoke) carry the
// proposer's view of the caller in the request header (Username and
// AuthRevision; no header: no credentials) and are checked against the auth
// state at their place in the log, so every member gives the same answer.
// Requests the member makes itself (the lessor's expiry revokes and
// checkpoints, whose header carries a basis in ID, and auto-compaction) are
// not checked: their header names no user. Admin requests need the root
// role; nothing else looks at the header.

// UseAuth makes the state machine apply auth requests to a (whose options
// name the token kind and bcrypt cost). Call it before the first Apply;
// without it a store with the default options is used. Server.UseStateMachine
// calls it with the Server's store.
func (sm *StateMachine) UseAuth(a *auth.Store) { sm.auth.Store(a) }

// authStore returns the auth store the state machine applies to.
func (sm *StateMachine) authStore() *auth.Store { return sm.auth.Load() }

// storeLeases finds the keys attached to a lease in the store.
type storeLeases struct{ s *mvcc.Store }

func (l storeLeases) LeaseKeys(id int64) ([][]byte, bool) {
	info, ok := l.s.Lease(id)
	return info.Keys, ok
}

// headerInfo returns the identity a proposal's header carries.
func headerInfo(h *pb.RequestHeader) *auth.AuthInfo {
	if h == nil {
		return nil
	}
	return &auth.AuthInfo{Username: h.Username, Revision: h.AuthRevision}
}

// checkApply runs etcd's apply-time permission check of a client request;
// requests of other kinds pass.
func (sm *StateMachine) checkApply(a *auth.Store, r *pb.InternalRaftRequest) error {
	c := a.Checker()
	if !c.Enabled() {
		return nil
	}
	ai := headerInfo(r.Header)
	switch {
	case r.Put != nil:
		return c.CheckPut(ai, r.Put, storeLeases{sm.store})
	case r.DeleteRange != nil:
		return c.CheckDeleteRange(ai, r.DeleteRange)
	case r.Txn != nil:
		return c.CheckTxn(ai, r.Txn, storeLeases{sm.store})
	case r.LeaseRevoke != nil && !isExpiryRevoke(r.Header):
		return c.CheckLeaseWrite(ai, r.LeaseRevoke.ID, storeLeases{sm.store})
	case needsAdmin(r):
		return c.IsAdminPermitted(ai)
	case r.AuthUserGet != nil:
		return c.CheckUserGet(ai, r.AuthUserGet.Name)
	case r.AuthRoleGet != nil:
		return c.CheckRoleGet(ai, r.AuthRoleGet.Role)
	}
	return nil
}

// isExpiryRevoke reports whether a LeaseRevoke's header marks it as the
// lessor's expiry revoke: the lessor's header carries its basis and no user,
// whereas a client's revoke has no header (no credentials) or one naming its
// user.
func isExpiryRevoke(h *pb.RequestHeader) bool { return h != nil && h.Username == "" }

// needsAdmin reports whether r is an auth request only the root role may
// make.
func needsAdmin(r *pb.InternalRaftRequest) bool {
	return r.AuthEnable != nil || r.AuthDisable != nil ||
		r.AuthUserAdd != nil || r.AuthUserDelete != nil || r.AuthUserChangePassword != nil ||
		r.AuthUserGrantRole != nil || r.AuthUserRevokeRole != nil ||
		r.AuthRoleAdd != nil || r.AuthRoleDelete != nil ||
		r.AuthRoleGrantPermission != nil || r.AuthRoleRevokePermission != nil ||
		r.AuthUserList != nil || r.AuthRoleList != nil
}

// applyAuth applies an auth request (its permission already checked); ok
// is false if r is not one.
func (sm *StateMachine) applyAuth(index uint64, a *auth.Store, r *pb.InternalRaftRequest) (res result, ok bool) {
	switch {
	case r.Authenticate != nil:
		res.resp, res.err = a.Authenticate(index, r.Authenticate)
	case r.AuthEnable != nil:
		res.resp, res.err = a.AuthEnable()
	case r.AuthDisable != nil:
		res.resp, res.err = a.AuthDisable()
	case r.AuthStatus != nil:
		res.resp = a.AuthStatus()
	case r.AuthUserAdd != nil:
		res.resp, res.err = a.UserAdd(r.AuthUserAdd)
	case r.AuthUserDelete != nil:
		res.resp, res.err = a.UserDelete(r.AuthUserDelete)
	case r.AuthUserChangePassword != nil:
		res.resp, res.err = a.UserChangePassword(r.AuthUserChangePassword)
	case r.AuthUserGrantRole != nil:
		res.resp, res.err = a.UserGrantRole(r.AuthUserGrantRole)
	case r.AuthUserRevokeRole != nil:
		res.resp, res.err = a.UserRevokeRole(r.AuthUserRevokeRole)
	case r.AuthUserGet != nil:
		res.resp, res.err = a.UserGet(r.AuthUserGet)
	case r.AuthUserList != nil:
		res.resp, res.err = a.UserList(r.AuthUserList)
	case r.AuthRoleAdd != nil:
		res.resp, res.err = a.RoleAdd(r.AuthRoleAdd)
	case r.AuthRoleDelete != nil:
		res.resp, res.err = a.RoleDelete(r.AuthRoleDelete)
	case r.AuthRoleGrantPermission != nil:
		res.resp, res.err = a.RoleGrantPermission(r.AuthRoleGrantPermission)
	case r.AuthRoleRevokePermission != nil:
		res.resp, res.err = a.RoleRevokePermission(r.AuthRoleRevokePermission)
	case r.AuthRoleGet != nil:
		res.resp, res.err = a.RoleGet(r.AuthRoleGet)
	case r.AuthRoleList != nil:
		res.resp, res.err = a.RoleList(r.AuthRoleList)
	default:
		return res, false
	}
	return res, true
}

// Snapshots
//
// A state machine snapshot is the auth section (auth.Snapshot's format,
// which begins with its own magic and length) followed by the store's
// snapshot. Restore also accepts a snapshot that is the store's alone (from
// a member of an earlier version): the auth state is then etcd's initial
// one.

// snapshot writes the auth section, then the store.
type snapshot struct {
	auth  *auth.Snapshot
	store io.WriterTo
}

func (sn snapshot) WriteTo(w io.Writer) (int64, error) {
	n, err := sn.auth.WriteTo(w)
	if err != nil {
		return n, err
	}
	m, err := sn.store.WriteTo(w)
	return n + m, err
}

// restore reads a snapshot and installs it, or changes nothing on error.
func (sm *StateMachine) restore(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(len(auth.SnapshotMagic))
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("kvapi: reading snapshot: %w", err)
	}
	authSnap := auth.EmptySnapshot()
	if string(head) == auth.SnapshotMagic {
		if authSnap, err = auth.ReadSnapshot(br); err != nil {
			return err
		}
	}
	if err := sm.store.Restore(br); err != nil {
		return err
	}
	sm.authStore().Restore(authSnap)
	return nil
}
