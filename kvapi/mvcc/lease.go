package mvcc

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// MaxLeaseTTL is the largest TTL, in seconds, a lease may be granted with
// (etcd's limit).
const MaxLeaseTTL = 9_000_000_000

// LeaseInfo describes one lease.
type LeaseInfo struct {
	ID  int64
	TTL int64 // as granted, in seconds
	// RemainingTTL is the last checkpointed remaining TTL in seconds, 0 if the
	// lease was not checkpointed since it was granted or last renewed.
	RemainingTTL int64
	// GrantedAt is the log index of the entry that granted the lease (0 if
	// unknown), and RenewedAt that of its last renewal (0 if never renewed).
	// They let every member decide alike whether a request computed at some
	// log index still applies to this lease.
	GrantedAt, RenewedAt uint64
	// Keys are the keys attached to the lease, sorted. Leases leaves it nil.
	// The slices are shared with the store: do not modify them.
	Keys [][]byte
}

func (l leaseRec) info() LeaseInfo {
	return LeaseInfo{ID: l.id, TTL: l.ttl, RemainingTTL: l.remaining, GrantedAt: l.granted, RenewedAt: l.renewed}
}

func (s *Store) leaseExists(id int64) bool {
	_, ok := s.leases.Get(leaseRec{id: id})
	return ok
}

// LeaseGrant records a new lease granted by the log entry at index at (0 if
// not known). The TTL is stored as given: minimum-TTL rules are the caller's.
// Errors: ErrLeaseNotFound for id 0 (as etcd), ErrLeaseTTLTooLarge above
// MaxLeaseTTL, ErrLeaseExist if id is in use. Creates no revision. Writer
// only.
func (s *Store) LeaseGrant(id, ttl int64, at uint64) error {
	if id == 0 {
		return ErrLeaseNotFound
	}
	if ttl > MaxLeaseTTL {
		return ErrLeaseTTLTooLarge
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leaseExists(id) {
		return ErrLeaseExist
	}
	s.leases.Set(leaseRec{id: id, ttl: ttl, granted: at})
	s.size.Add(leaseOverhead)
	return nil
}

// LeaseRevoke removes a lease and deletes every key attached to it, in key
// order, all in one revision (none if it has no keys). The response header
// carries the revision after the revoke. ErrLeaseNotFound if the lease does
// not exist. Writer only.
func (s *Store) LeaseRevoke(id int64) (*pb.LeaseRevokeResponse, error) {
	s.mu.Lock()
	if !s.leaseExists(id) {
		s.mu.Unlock()
		return nil, ErrLeaseNotFound
	}
	var victims []*ver
	s.leaseKeys.Ascend(leaseKey{id: id}, func(lk leaseKey) bool {
		if lk.id != id {
			return false
		}
		if h := s.head(lk.key, nil); live(h) {
			victims = append(victims, h)
		}
		return true
	})
	w := s.begin()
	for _, v := range victims {
		s.del(w, v)
	}
	s.leases.Delete(leaseRec{id: id})
	s.size.Add(-leaseOverhead)
	evs := s.commit(w)
	resp := &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: s.rev.Load()}}
	s.unlockNotify(w.rev, evs)
	return resp, nil
}

// LeaseCheckpoint records the remaining TTL of a lease, in seconds (> 0).
// ErrLeaseNotFound if the lease does not exist. Creates no revision. Writer
// only.
func (s *Store) LeaseCheckpoint(id, remainingTTL int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases.Get(leaseRec{id: id})
	if !ok {
		return ErrLeaseNotFound
	}
	l.remaining = remainingTTL
	s.leases.Set(l)
	return nil
}

// LeaseRenew records a renewal (keepalive) of a lease by the log entry at
// index at: its countdown restarts from the full TTL, so the last
// checkpoint is dropped. ErrLeaseNotFound if the lease does not exist.
// Creates no revision. Writer only.
func (s *Store) LeaseRenew(id int64, at uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases.Get(leaseRec{id: id})
	if !ok {
		return ErrLeaseNotFound
	}
	l.remaining, l.renewed = 0, at
	s.leases.Set(l)
	return nil
}

// Lease returns one lease with its attached keys. Safe from any goroutine.
func (s *Store) Lease(id int64) (LeaseInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.leases.Get(leaseRec{id: id})
	if !ok {
		return LeaseInfo{}, false
	}
	info := l.info()
	s.leaseKeys.Ascend(leaseKey{id: id}, func(lk leaseKey) bool {
		if lk.id != id {
			return false
		}
		info.Keys = append(info.Keys, lk.key)
		return true
	})
	return info, true
}

// Leases returns every lease, sorted by ID, without keys. Safe from any
// goroutine.
func (s *Store) Leases() []LeaseInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]LeaseInfo, 0, s.leases.Len())
	s.leases.Scan(func(l leaseRec) bool {
		out = append(out, l.info())
		return true
	})
	return out
}
