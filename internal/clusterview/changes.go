package clusterview

import (
	"context"
	"errors"
	"fmt"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshkv/meshkv/kvapi"
	"github.com/meshkv/meshkv/raftadapter"
)

// RemoveMember removes member id, as etcdctl member remove. The leader makes
// the change; a follower forwards the request to the leader's client URL.
func (v *View) RemoveMember(ctx context.Context, id uint64) error {
	rn := v.cfg.Raft()
	if rn == nil {
		return ErrNotMember
	}
	st := rn.Status()
	switch {
	case !slices.Contains(st.Voters, id) && !slices.Contains(st.Learners, id):
		return fmt.Errorf("%w: %x", kvapi.ErrMemberNotFound, id)
	case len(st.Voters) == 1 && st.Voters[0] == id:
		return fmt.Errorf("%w: %x is the only voter", kvapi.ErrTooFewVoters, id)
	case !st.IsLeader:
		return v.forward(st.Leader, func(cli *clientv3.Client) error {
			_, err := cli.MemberRemove(ctx, id)
			return err
		})
	}
	return membershipError(rn.RemoveMember(ctx, id))
}

// PromoteMember promotes learner id to voter, as etcdctl member promote, if
// it has caught up with the leader's log.
func (v *View) PromoteMember(ctx context.Context, id uint64) error {
	rn := v.cfg.Raft()
	if rn == nil {
		return ErrNotMember
	}
	st := rn.Status()
	switch {
	case slices.Contains(st.Voters, id):
		return fmt.Errorf("%w: %x is a voter", kvapi.ErrMemberNotLearner, id)
	case !slices.Contains(st.Learners, id):
		return fmt.Errorf("%w: %x", kvapi.ErrMemberNotFound, id)
	case !st.IsLeader:
		return v.forward(st.Leader, func(cli *clientv3.Client) error {
			_, err := cli.MemberPromote(ctx, id)
			return err
		})
	case !learnerReady(st, id):
		return fmt.Errorf("%w: %x", kvapi.ErrLearnerNotReady, id)
	}
	return membershipError(rn.Promote(ctx, id))
}

// learnerReady is etcd's rule for an operator's promotion: the learner is
// active and has acknowledged at least 90% of what the leader has. (The
// automatic promotions of internal/membership demand more: the leader's
// commit index, for a while.)
func learnerReady(st raftadapter.Status, id uint64) bool {
	pr, ok := st.Progress[id]
	lead := st.Progress[st.ID]
	return ok && pr.RecentActive && pr.Match > 0 && pr.Match*10 >= lead.Match*9
}

// MoveLeader hands leadership to voter to. Like etcd, only the leader accepts
// it (etcdctl move-leader finds the leader itself).
func (v *View) MoveLeader(ctx context.Context, to uint64) error {
	rn := v.cfg.Raft()
	if rn == nil {
		return ErrNotMember
	}
	st := rn.Status()
	switch {
	case !st.IsLeader:
		return fmt.Errorf("%w: move-leader goes to the leader", kvapi.ErrNotLeader)
	case !slices.Contains(st.Voters, to):
		return fmt.Errorf("%w: %x", kvapi.ErrBadLeaderTransferee, to)
	}
	return raftError(rn.TransferLeadership(ctx, to))
}

// membershipError maps raftadapter's membership errors to kvapi's.
func membershipError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raftadapter.ErrUnknownMember):
		return fmt.Errorf("%w: %w", kvapi.ErrMemberNotFound, err)
	case errors.Is(err, raftadapter.ErrMemberExists):
		return fmt.Errorf("%w: %w", kvapi.ErrMemberExists, err)
	case errors.Is(err, raftadapter.ErrNotLeader):
		return fmt.Errorf("%w: %w", kvapi.ErrNotLeader, err)
	case errors.Is(err, raftadapter.ErrInvalidConfChange):
		return fmt.Errorf("%w: %w", kvapi.ErrTooFewVoters, err)
	}
	return raftError(err)
}
