package kvapi

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/meshkv/meshkv/kvapi/auth"
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
	lessor atomic.Pointer[lessor]     // told of lease changes (Server.UseStateMachine); see lease_apply.go
	watch  atomic.Pointer[watchHub]   // told of restores (Server.UseStateMachine)
	auth   atomic.Pointer[auth.Store] // the replicated auth state; see statemachine_auth.go
	ops    opCounters                 // what this member applied (Server.Stats)
}

// NewStateMachine returns the state machine that applies requests to store,
// and auth requests to an auth store with the default options until UseAuth
// gives it another.
func NewStateMachine(store *mvcc.Store) *StateMachine {
	sm := &StateMachine{store: store}
	a, err := auth.New(auth.Config{})
	if err != nil {
		panic(fmt.Sprintf("kvapi: the default auth options are invalid: %v", err)) // cannot happen
	}
	sm.auth.Store(a)
	return sm
}

// result is what Apply hands back to the proposing RPC.
type result struct {
	resp any
	err  error
}

// Apply decodes one committed request, checks its permissions and applies
// it. Its result is a *result; errors in it are the store's and the auth
// store's sentinel errors.
func (sm *StateMachine) Apply(index uint64, data []byte) any {
	a := sm.authStore()
	defer a.Applied(index)
	r := new(pb.InternalRaftRequest)
	if err := proto.Unmarshal(data, r); err != nil {
		return &result{err: fmt.Errorf("%w at index %d: %v", ErrBadEntry, index, err)}
	}
	if err := sm.checkApply(a, r); err != nil {
		return &result{err: err}
	}
	var res result
	switch {
	case r.Put != nil:
		res.resp, res.err = sm.store.Put(r.Put)
		if res.err == nil {
			sm.ops.puts.Add(1)
		}
	case r.DeleteRange != nil:
		res.resp, res.err = sm.store.DeleteRange(r.DeleteRange)
		if res.err == nil {
			sm.ops.deletes.Add(1)
		}
	case r.Txn != nil:
		var tr *pb.TxnResponse
		tr, res.err = sm.store.Txn(r.Txn)
		if res.err == nil {
			sm.ops.countTxn(tr)
			res.resp = tr
		}
	case r.Compaction != nil:
		res.resp, res.err = sm.store.Compact(r.Compaction)
	case r.LeaseGrant != nil:
		res.resp, res.err = sm.applyLeaseGrant(index, r.LeaseGrant)
	case r.LeaseRevoke != nil:
		res.resp, res.err = sm.applyLeaseRevoke(index, r.Header, r.LeaseRevoke)
	case r.LeaseCheckpoint != nil:
		res.resp, res.err = sm.applyLeaseCheckpoint(index, r.Header, r.LeaseCheckpoint)
	default:
		var ok bool
		if res, ok = sm.applyAuth(index, a, r); !ok {
			res.err = fmt.Errorf("%w at index %d: no known request", ErrBadEntry, index)
		}
	}
	return &res
}

// Snapshot captures the store and the auth state as of the last applied
// entry. Serializing the capture may happen on another goroutine.
func (sm *StateMachine) Snapshot() (io.WriterTo, error) {
	return snapshot{auth: sm.authStore().Snapshot(), store: sm.store.Snapshot()}, nil
}

// Restore replaces the whole state with a snapshot's.
func (sm *StateMachine) Restore(r io.Reader) error {
	if err := sm.restore(r); err != nil {
		return err
	}
	sm.leaseRestored()
	if h := sm.watch.Load(); h != nil {
		h.restored(sm.store.Rev())
	}
	return nil
}
