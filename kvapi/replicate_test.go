package kvapi

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// flakyReplicator fails the first proposals with err, then applies.
type flakyReplicator struct {
	localReplicator
	err      error
	failures atomic.Int32 // proposals still to fail; < 0: fail for ever
	calls    atomic.Int32
}

func (r *flakyReplicator) Propose(ctx context.Context, data []byte) (any, error) {
	r.calls.Add(1)
	if n := r.failures.Load(); n != 0 {
		r.failures.Add(-1)
		return nil, r.err
	}
	return r.localReplicator.Propose(ctx, data)
}

func TestProposalsWaitOutElections(t *testing.T) {
	for _, cause := range []error{ErrNoLeader, ErrLeaderChanged} {
		store := mvcc.New()
		rep := &flakyReplicator{localReplicator: localReplicator{sm: NewStateMachine(store)}, err: cause}
		rep.failures.Store(3)
		s, err := NewServer(Config{}, store, rep, fixedCluster{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := (kvServer{Server: s}).Put(context.Background(), &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
			t.Fatalf("%v: Put after three failed proposals: %v", cause, err)
		}
		if got := rep.calls.Load(); got != 4 {
			t.Fatalf("%v: %d proposals, want 4", cause, got)
		}
		if store.Rev() != 2 {
			t.Fatalf("%v: revision %d, want 2: applied exactly once", cause, store.Rev())
		}
	}
}

func TestProposalGivesUpAfterRequestTimeout(t *testing.T) {
	store := mvcc.New()
	rep := &flakyReplicator{localReplicator: localReplicator{sm: NewStateMachine(store)}, err: ErrNoLeader}
	rep.failures.Store(-1)
	s, err := NewServer(Config{RequestTimeout: 200 * time.Millisecond}, store, rep, fixedCluster{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = (kvServer{Server: s}).Put(context.Background(), &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
	if !errors.Is(err, rpctypes.ErrGRPCNoLeader) {
		t.Fatalf("Put with no leader for ever: %v, want %v", err, rpctypes.ErrGRPCNoLeader)
	}
	// Errors whose outcome is unknown are not retried.
	rep.err, rep.calls = ErrTimeout, atomic.Int32{}
	rep.failures.Store(1)
	if _, err := (kvServer{Server: s}).Put(context.Background(), &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); !errors.Is(err, rpctypes.ErrGRPCTimeout) {
		t.Fatalf("Put whose outcome is unknown: %v, want %v", err, rpctypes.ErrGRPCTimeout)
	}
	if rep.calls.Load() != 1 {
		t.Fatalf("an unknown outcome was retried (%d proposals)", rep.calls.Load())
	}
}
