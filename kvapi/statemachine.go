package kvapi

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// ErrBadEntry is returned by Apply for a committed entry that does not decode
// to a request this version understands. The entry is skipped on every member
// alike, so the replicas stay identical.
var ErrBadEntry = errors.New("kvapi: undecodable log entry")

// StateMachine applies committed requests to the store. All its methods are
// called by the replicator's apply goroutine, one at a time, in log order.
type StateMachine struct {
	store  *mvcc.Store
	lessor atomic.Pointer[lessor]   // told of lease changes (Server.UseStateMachine); see lease_apply.go
	watch  atomic.Pointer[watchHub] // told of restores (Server.UseStateMachine)
}

// NewStateMachine returns the state machine that applies requests to store.
func NewStateMachine(store *mvcc.Store) *StateMachine {
	return &StateMachine{store: store}
}

// result is what Apply hands back to the proposing RPC.
type result struct {
	resp any
	err  error
}

// Apply decodes one committed request and applies it. Its result is a
// *result; errors in it are the store's sentinel errors.
func (sm *StateMachine) Apply(index uint64, data []byte) any {
	r := new(pb.InternalRaftRequest)
	if err := proto.Unmarshal(data, r); err != nil {
		return &result{err: fmt.Errorf("%w at index %d: %v", ErrBadEntry, index, err)}
	}
	var res result
	switch {
	case r.Put != nil:
		res.resp, res.err = sm.store.Put(r.Put)
	case r.DeleteRange != nil:
		res.resp, res.err = sm.store.DeleteRange(r.DeleteRange)
	case r.Txn != nil:
		res.resp, res.err = sm.store.Txn(r.Txn)
	case r.Compaction != nil:
		res.resp, res.err = sm.store.Compact(r.Compaction)
	case r.LeaseGrant != nil:
		res.resp, res.err = sm.applyLeaseGrant(index, r.LeaseGrant)
	case r.LeaseRevoke != nil:
		res.resp, res.err = sm.applyLeaseRevoke(index, r.Header, r.LeaseRevoke)
	case r.LeaseCheckpoint != nil:
		res.resp, res.err = sm.applyLeaseCheckpoint(index, r.Header, r.LeaseCheckpoint)
	default:
		res.err = fmt.Errorf("%w at index %d: no known request", ErrBadEntry, index)
	}
	return &res
}

// Snapshot captures the store as of the last applied entry. Serializing the
// capture may happen on another goroutine.
func (sm *StateMachine) Snapshot() (io.WriterTo, error) {
	return sm.store.Snapshot(), nil
}

// Restore replaces the whole state with a snapshot's.
func (sm *StateMachine) Restore(r io.Reader) error {
	if err := sm.store.Restore(r); err != nil {
		return err
	}
	sm.leaseRestored()
	if h := sm.watch.Load(); h != nil {
		h.restored(sm.store.Rev())
	}
	return nil
}
