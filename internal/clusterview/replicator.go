package clusterview

import (
	"context"
	"errors"
	"fmt"

	"github.com/meshkv/meshkv/kvapi"
	"github.com/meshkv/meshkv/raftadapter"
)

// ErrNotMember is returned while the node has not yet formed or joined a
// cluster; clients see etcd's "no leader".
var ErrNotMember = fmt.Errorf("%w: not a member of a cluster yet", kvapi.ErrNoLeader)

// Replicator adapts the node's raft member to kvapi, translating its errors.
type Replicator struct{ raft func() Raft }

var _ kvapi.Replicator = Replicator{}

// NewReplicator returns a replicator over the raft member raft returns
// (nil, not a typed nil, before the node is in a cluster).
func NewReplicator(raft func() Raft) Replicator { return Replicator{raft: raft} }

// Propose replicates data and returns what applying it returned.
func (r Replicator) Propose(ctx context.Context, data []byte) (any, error) {
	rn := r.raft()
	if rn == nil {
		return nil, ErrNotMember
	}
	v, err := rn.Propose(ctx, data)
	return v, raftError(err)
}

// ReadIndex waits until this member applied what was committed when it was
// called (a linearizable read's barrier).
func (r Replicator) ReadIndex(ctx context.Context) error {
	rn := r.raft()
	if rn == nil {
		return ErrNotMember
	}
	return raftError(rn.ReadIndex(ctx))
}

// raftError maps raftadapter's errors to the ones kvapi turns into etcd's.
func raftError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raftadapter.ErrNoLeader):
		return fmt.Errorf("%w: %w", kvapi.ErrNoLeader, err)
	case errors.Is(err, raftadapter.ErrLeaderChanged):
		return fmt.Errorf("%w: %w", kvapi.ErrLeaderChanged, err)
	case errors.Is(err, raftadapter.ErrStopped), errors.Is(err, raftadapter.ErrRemoved):
		return fmt.Errorf("%w: %w", kvapi.ErrStopped, err)
	case errors.Is(err, raftadapter.ErrTimeout), errors.Is(err, raftadapter.ErrOutcomeUnknown):
		return fmt.Errorf("%w: %w", kvapi.ErrTimeout, err)
	}
	return err
}
