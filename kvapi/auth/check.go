package auth

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Permission checks, as etcd makes them. Each loads the current state once,
// so a compound check (a txn, a lease's keys) sees one version of it. They
// are cheap when authentication is disabled (one atomic load) and allocate
// nothing when it is enabled.
//
// ai is the request's identity; nil (no credentials) is refused with
// ErrUserEmpty while authentication is enabled.

// Checker is the current auth state, for a series of permission checks that
// must agree with each other. Get one with Store.Checker; it never changes.
type Checker struct{ st *state }

// Checker returns the current state for permission checks.
func (s *Store) Checker() Checker { return Checker{st: s.cur.Load()} }

// Enabled reports whether authentication was enabled in this state.
func (c Checker) Enabled() bool { return c.st.enabled }

// Revision returns the auth revision of this state.
func (c Checker) Revision() uint64 { return c.st.revision }

// permission kinds.
const (
	permRead = iota
	permWrite
)

// op checks one key or range for one kind of permission.
func (c Checker) op(ai *AuthInfo, key, end []byte, kind int) error {
	st := c.st
	if !st.enabled {
		return nil
	}
	if ai == nil || ai.Revision == 0 {
		return ErrUserEmpty
	}
	if ai.Revision < st.revision {
		return ErrAuthOldRevision
	}
	u := st.users[ai.Username]
	if u == nil {
		return ErrPermissionDenied
	}
	if u.root {
		return nil
	}
	spans := &u.perms.read
	if kind == permWrite {
		spans = &u.perms.write
	}
	if spans.allows(key, end) {
		return nil
	}
	return ErrPermissionDenied
}

// IsRangePermitted checks read permission on key, or on [key, end) ("\x00"
// as end: to the end of the key space).
func (c Checker) IsRangePermitted(ai *AuthInfo, key, end []byte) error {
	return c.op(ai, key, end, permRead)
}

// IsPutPermitted checks write permission on key.
func (c Checker) IsPutPermitted(ai *AuthInfo, key []byte) error {
	return c.op(ai, key, nil, permWrite)
}

// IsDeleteRangePermitted checks write permission on key or [key, end).
func (c Checker) IsDeleteRangePermitted(ai *AuthInfo, key, end []byte) error {
	return c.op(ai, key, end, permWrite)
}

// IsAdminPermitted checks that the user holds the root role (auth
// management, maintenance, membership changes, compaction). Unlike key
// permissions it does not look at the revision, as etcd does not.
func (c Checker) IsAdminPermitted(ai *AuthInfo) error {
	st := c.st
	if !st.enabled {
		return nil
	}
	if ai == nil || ai.Username == "" {
		return ErrUserEmpty
	}
	u := st.users[ai.Username]
	if u == nil {
		return ErrUserNotFound
	}
	if !u.root {
		return ErrPermissionDenied
	}
	return nil
}

// RequireAuthInfo checks that a request carries credentials while
// authentication is enabled (etcd 3.7 asks this of Status, MemberList,
// alarm listing and lease grant, revoke and time-to-live).
func (c Checker) RequireAuthInfo(ai *AuthInfo) error {
	if c.st.enabled && ai == nil {
		return ErrUserEmpty
	}
	return nil
}

// HasRole reports whether user exists and holds role.
func (c Checker) HasRole(user, role string) bool {
	u := c.st.users[user]
	return u != nil && u.hasRole(role)
}

// username returns the user ai names, "" for none.
func username(ai *AuthInfo) string {
	if ai == nil {
		return ""
	}
	return ai.Username
}

// CheckUserGet checks a UserGet: admins get anyone, users themselves.
func (c Checker) CheckUserGet(ai *AuthInfo, name string) error {
	if err := c.IsAdminPermitted(ai); err != nil && name != username(ai) {
		return err
	}
	return nil
}

// CheckRoleGet checks a RoleGet: admins get any role, users the roles they
// hold.
func (c Checker) CheckRoleGet(ai *AuthInfo, role string) error {
	if err := c.IsAdminPermitted(ai); err != nil && !c.HasRole(username(ai), role) {
		return err
	}
	return nil
}

// LeaseKeys finds the keys attached to a lease (ok false: no such lease).
type LeaseKeys interface {
	LeaseKeys(id int64) (keys [][]byte, ok bool)
}

// CheckPut checks a Put: write on the key; write on every key already
// attached to the lease it attaches the key to (a user who could not revoke
// that lease may not add to it); read on the key if it asks for the
// previous value.
func (c Checker) CheckPut(ai *AuthInfo, r *pb.PutRequest, leases LeaseKeys) error {
	if !c.st.enabled {
		return nil
	}
	if err := c.IsPutPermitted(ai, r.Key); err != nil {
		return err
	}
	if r.Lease != 0 {
		if err := c.CheckLeaseWrite(ai, r.Lease, leases); err != nil {
			return err
		}
	}
	if r.PrevKv {
		return c.IsRangePermitted(ai, r.Key, nil)
	}
	return nil
}

// CheckLeaseWrite checks that the user may write every key attached to
// lease id (admins may always): etcd's rule for LeaseRevoke, for a Put that
// attaches a key to the lease, and (3.7) for keepalives.
func (c Checker) CheckLeaseWrite(ai *AuthInfo, id int64, leases LeaseKeys) error {
	if !c.st.enabled || leases == nil || c.IsAdminPermitted(ai) == nil {
		return nil
	}
	keys, _ := leases.LeaseKeys(id)
	for _, k := range keys {
		if err := c.IsPutPermitted(ai, k); err != nil {
			return err
		}
	}
	return nil
}

// CheckLeaseRead checks that the user may read every key attached to lease
// id (admins may always): etcd's rule for LeaseTimeToLive with keys.
func (c Checker) CheckLeaseRead(ai *AuthInfo, id int64, leases LeaseKeys) error {
	if !c.st.enabled || leases == nil || c.IsAdminPermitted(ai) == nil {
		return nil
	}
	keys, _ := leases.LeaseKeys(id)
	for _, k := range keys {
		if err := c.IsRangePermitted(ai, k, nil); err != nil {
			return err
		}
	}
	return nil
}

// CheckDeleteRange checks a DeleteRange: write on the range, and read on it
// if it asks for the previous values.
func (c Checker) CheckDeleteRange(ai *AuthInfo, r *pb.DeleteRangeRequest) error {
	if !c.st.enabled {
		return nil
	}
	if err := c.IsDeleteRangePermitted(ai, r.Key, r.RangeEnd); err != nil {
		return err
	}
	if r.PrevKv {
		return c.IsRangePermitted(ai, r.Key, r.RangeEnd)
	}
	return nil
}

// CheckTxn checks a Txn as etcd does: read on every compare, then every
// operation of both branches in order (nested txns included), whichever
// branch will run.
func (c Checker) CheckTxn(ai *AuthInfo, r *pb.TxnRequest, leases LeaseKeys) error {
	if !c.st.enabled {
		return nil
	}
	for _, cmp := range r.Compare {
		if err := c.IsRangePermitted(ai, cmp.Key, cmp.RangeEnd); err != nil {
			return err
		}
	}
	if err := c.checkOps(ai, r.Success, leases); err != nil {
		return err
	}
	return c.checkOps(ai, r.Failure, leases)
}

func (c Checker) checkOps(ai *AuthInfo, ops []*pb.RequestOp, leases LeaseKeys) error {
	for _, op := range ops {
		var err error
		switch {
		case op.GetRequestRange() != nil:
			rr := op.GetRequestRange()
			err = c.IsRangePermitted(ai, rr.Key, rr.RangeEnd)
		case op.GetRequestPut() != nil:
			err = c.CheckPut(ai, op.GetRequestPut(), leases)
		case op.GetRequestDeleteRange() != nil:
			dr := op.GetRequestDeleteRange()
			if dr.PrevKv {
				err = c.IsRangePermitted(ai, dr.Key, dr.RangeEnd)
			}
			if err == nil {
				err = c.IsDeleteRangePermitted(ai, dr.Key, dr.RangeEnd)
			}
		case op.GetRequestTxn() != nil:
			err = c.CheckTxn(ai, op.GetRequestTxn(), leases)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// CheckLeases checks a LeaseLeases listing (etcd 3.7): admins see every
// lease, other users only if they may read every key attached to any.
func (c Checker) CheckLeases(ai *AuthInfo, ids []int64, leases LeaseKeys) error {
	if !c.st.enabled {
		return nil
	}
	if ai == nil {
		return ErrUserEmpty
	}
	if c.IsAdminPermitted(ai) == nil {
		return nil
	}
	for _, id := range ids {
		if err := c.CheckLeaseRead(ai, id, leases); err != nil {
			return err
		}
	}
	return nil
}
