package kvapi

import (
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// Lease requests in the replicated log
//
// Lease entries are etcd's InternalRaftRequest messages:
//
//   - LeaseGrant{ID, TTL}: the proposer has already chosen the id and raised
//     the TTL to the minimum, so every member applies the same grant.
//   - LeaseRevoke{ID} without a Header, or with one naming a user (the
//     client's identity, for the permission check): a client's revoke;
//     unconditional.
//   - LeaseRevoke{ID} with a Header naming no user: an expiry revoke by the
//     leader's lessor. Header.ID is its basis (see below); the revoke is
//     skipped if the lease was renewed after the basis.
//   - LeaseCheckpoint entries with Remaining_TTL <= 0: renewals (one
//     keepalive), the way etcd itself encodes a renewal that resets a
//     checkpointed remainder. A renewal restarts the lease's countdown from
//     its full TTL.
//   - LeaseCheckpoint entries with Remaining_TTL > 0: the leader's periodic
//     checkpoint of remaining TTLs. Header.ID is its basis; an entry is
//     ignored if its lease was renewed after the basis.
//
// The basis of a request the lessor makes on its own is the log index of the
// last lease entry the lessor had applied when it looked at its deadlines:
// its view reflects every renewal at or below the basis and none above it. A
// renewal committed between the lessor's look and its request would
// otherwise be undone by a checkpoint carrying an older remainder, or by an
// expiry revoke that no longer holds.
//
// The same holds for a lease revoked and granted again under the same id
// after the basis: the request was about the old lease and must not touch
// the new one.
//
// For the check to give the same answer on every member, including one that
// restored a snapshot, the store keeps each lease's grant and last renewal
// log indexes (mvcc.LeaseInfo.GrantedAt, RenewedAt) beside its last
// checkpointed remainder. Deadlines themselves are local (monotonic clock)
// and live in the lessor.

// errLeaseRenewed is the result of an expiry revoke skipped because the lease
// was renewed, or granted anew, after the lessor decided to revoke it.
var errLeaseRenewed = errors.New("kvapi: lease renewed since the expiry decision")

// leaseChangeKind says what an applied entry did to one lease.
type leaseChangeKind uint8

const (
	leaseGranted leaseChangeKind = iota + 1
	leaseRenewed
	leaseCheckpointed
	leaseRevoked
)

// leaseChange is one lease change made by an applied entry.
type leaseChange struct {
	kind leaseChangeKind
	id   int64
	// secs is the TTL for leaseGranted and leaseRenewed, the remaining TTL
	// for leaseCheckpointed.
	secs int64
}

// leaseObserver learns of lease changes as Apply makes them, on the apply
// goroutine, before the result reaches the proposer. It must not block.
type leaseObserver interface {
	// leaseApplied is called once per lease entry, even one that changed
	// nothing, with the changes in the order they were made.
	leaseApplied(index uint64, changes []leaseChange)
	// leasesRestored is called after a snapshot replaced the store.
	leasesRestored(leases []mvcc.LeaseInfo)
}

var _ leaseObserver = (*lessor)(nil)

// leaseObs returns the observer, or nil if none is attached.
func (sm *StateMachine) leaseObs() leaseObserver {
	if l := sm.lessor.Load(); l != nil {
		return l
	}
	return nil
}

func (sm *StateMachine) notifyLease(index uint64, changes ...leaseChange) {
	if o := sm.leaseObs(); o != nil {
		o.leaseApplied(index, changes)
	}
}

// leaseRestored tells the observer that Restore replaced the store.
func (sm *StateMachine) leaseRestored() {
	if o := sm.leaseObs(); o != nil {
		o.leasesRestored(sm.store.Leases())
	}
}

func (sm *StateMachine) applyLeaseGrant(index uint64, r *pb.LeaseGrantRequest) (any, error) {
	if err := sm.store.LeaseGrant(r.ID, r.TTL, index); err != nil {
		sm.notifyLease(index)
		return nil, err
	}
	sm.notifyLease(index, leaseChange{kind: leaseGranted, id: r.ID, secs: r.TTL})
	sm.ops.leasesGranted.Add(1)
	return &pb.LeaseGrantResponse{ID: r.ID, TTL: r.TTL}, nil
}

// changedAfter reports whether lease l was granted or renewed at a log index
// above basis: a request computed at basis no longer applies to it.
func changedAfter(l mvcc.LeaseInfo, basis uint64) bool {
	return l.GrantedAt > basis || l.RenewedAt > basis
}

func (sm *StateMachine) applyLeaseRevoke(index uint64, h *pb.RequestHeader, r *pb.LeaseRevokeRequest) (any, error) {
	if isExpiryRevoke(h) {
		if l, ok := sm.store.Lease(r.ID); ok && changedAfter(l, h.ID) {
			sm.notifyLease(index)
			return nil, errLeaseRenewed
		}
	}
	resp, err := sm.store.LeaseRevoke(r.ID)
	if err != nil {
		sm.notifyLease(index)
		return nil, err
	}
	sm.notifyLease(index, leaseChange{kind: leaseRevoked, id: r.ID})
	sm.ops.leasesRevoked.Add(1)
	return resp, nil
}

// applyLeaseCheckpoint applies renewals and checkpoints. A request holding a
// single renewal answers with the lease's keepalive response, or
// ErrLeaseNotFound; any other request answers LeaseCheckpointResponse and
// ignores leases that no longer exist.
func (sm *StateMachine) applyLeaseCheckpoint(index uint64, h *pb.RequestHeader, r *pb.LeaseCheckpointRequest) (any, error) {
	changes := make([]leaseChange, 0, len(r.Checkpoints))
	var ka *pb.LeaseKeepAliveResponse
	var kaErr error
	for _, cp := range r.Checkpoints {
		if cp == nil {
			continue
		}
		l, ok := sm.store.Lease(cp.ID)
		switch {
		case !ok:
			kaErr = mvcc.ErrLeaseNotFound
		case cp.Remaining_TTL <= 0: // renewal
			if err := sm.store.LeaseRenew(cp.ID, index); err != nil {
				kaErr = err
				continue
			}
			changes = append(changes, leaseChange{kind: leaseRenewed, id: cp.ID, secs: l.TTL})
			ka = &pb.LeaseKeepAliveResponse{ID: cp.ID, TTL: l.TTL}
		case h != nil && changedAfter(l, h.ID):
			// Computed before a renewal (or a new grant) this member has
			// applied: stale.
		default:
			// The store keeps the remainder for members that restore a
			// snapshot: they continue the countdown from it.
			if err := sm.store.LeaseCheckpoint(cp.ID, cp.Remaining_TTL); err != nil {
				continue
			}
			changes = append(changes, leaseChange{kind: leaseCheckpointed, id: cp.ID, secs: cp.Remaining_TTL})
		}
	}
	sm.notifyLease(index, changes...)
	if len(r.Checkpoints) == 1 && r.Checkpoints[0] != nil && r.Checkpoints[0].Remaining_TTL <= 0 {
		if ka == nil {
			if kaErr == nil {
				kaErr = mvcc.ErrLeaseNotFound
			}
			return nil, kaErr
		}
		return ka, nil
	}
	return &pb.LeaseCheckpointResponse{}, nil
}
