package raftadapter_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"

	"github.com/meshkv/meshkv/raftadapter"
	"github.com/meshkv/meshkv/raftadapter/raftadaptertest"
)

// change runs a membership change in the background while the cluster is
// ticked, since a new leader defers changes until it has applied its log.
func (c *cluster) change(what string, f func(ctx context.Context) error) error {
	c.t.Helper()
	return c.await(what, 30, async(func() error { return f(context.Background()) }))
}

func TestMembershipAddPromoteRemove(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	lead := c.waitLeader()
	for i := range 5 {
		c.put(lead, "k"+strconv.Itoa(i), "v")
	}
	l := c.nodes[lead]
	follower := c.others(lead)[0]

	if err := c.nodes[follower].AddLearner(context.Background(), 4, nil); !errors.Is(err, raftadapter.ErrNotLeader) {
		t.Fatalf("AddLearner on follower: err = %v, want ErrNotLeader", err)
	}

	joiner := c.start(4, nil) // joins with an empty log
	if err := c.change("add learner 4", func(ctx context.Context) error {
		return l.AddLearner(ctx, 4, []byte("http://node4"))
	}); err != nil {
		t.Fatalf("AddLearner(4): %v", err)
	}
	if st := l.Status(); !slices.Contains(st.Learners, 4) || slices.Contains(st.Voters, 4) {
		t.Fatalf("leader membership after AddLearner: voters %v learners %v", st.Voters, st.Learners)
	}
	c.waitFor("learner catches up", 20, func() bool {
		return c.converged(c.ids...) && slices.Contains(joiner.Status().Learners, 4)
	})
	if err := c.change("add learner 4 again", func(ctx context.Context) error {
		return l.AddLearner(ctx, 4, nil)
	}); !errors.Is(err, raftadapter.ErrMemberExists) {
		t.Fatalf("AddLearner(4) again: err = %v, want ErrMemberExists", err)
	}
	// A learner can serve linearizable reads.
	c.put(follower, "via-follower", "1")
	if err := joiner.ReadIndex(context.Background()); err != nil {
		t.Fatalf("ReadIndex on learner: %v", err)
	}
	if v, _ := c.kvs[4].Get("via-follower"); v != "1" {
		t.Fatalf("learner read missed an acknowledged write")
	}

	if err := c.change("promote 99", func(ctx context.Context) error { return l.Promote(ctx, 99) }); !errors.Is(err, raftadapter.ErrUnknownMember) {
		t.Fatalf("Promote(99): err = %v, want ErrUnknownMember", err)
	}
	if err := c.change("promote 4", func(ctx context.Context) error { return l.Promote(ctx, 4) }); err != nil {
		t.Fatalf("Promote(4): %v", err)
	}
	c.waitFor("everyone sees 4 as voter", 10, func() bool {
		for _, id := range c.ids {
			if !slices.Contains(c.nodes[id].Status().Voters, 4) {
				return false
			}
		}
		return true
	})
	if err := c.change("promote 4 again", func(ctx context.Context) error { return l.Promote(ctx, 4) }); err != nil {
		t.Fatalf("Promote(4) again: %v, want nil (already a voter)", err)
	}
	// Membership metadata lives in the replicated state.
	for _, id := range c.ids {
		if got := c.kvs[id].Members()[4]; got != "http://node4" {
			t.Errorf("node %d: member 4 context = %q", id, got)
		}
	}
	c.put(4, "via-4", "1")

	// Remove a follower, then the leader itself.
	if err := c.change("remove follower", func(ctx context.Context) error { return l.RemoveMember(ctx, follower) }); err != nil {
		t.Fatalf("RemoveMember(%d): %v", follower, err)
	}
	if st := l.Status(); slices.Contains(st.Voters, follower) || len(st.Voters) != 3 {
		t.Fatalf("voters after removing %d: %v", follower, st.Voters)
	}
	if err := c.change("remove 99", func(ctx context.Context) error { return l.RemoveMember(ctx, 99) }); !errors.Is(err, raftadapter.ErrUnknownMember) {
		t.Fatalf("RemoveMember(99): err = %v, want ErrUnknownMember", err)
	}
	changes := l.Changes()
	if err := c.change("remove leader", func(ctx context.Context) error { return l.RemoveMember(ctx, lead) }); err != nil {
		t.Fatalf("RemoveMember(leader %d): %v", lead, err)
	}
	select {
	case <-changes:
	default:
		t.Error("Changes not signalled by the membership change")
	}
	if st := l.Status(); !st.Removed || st.IsLeader {
		t.Fatalf("removed leader status: removed %v leader %v", st.Removed, st.IsLeader)
	}
	if _, err := l.Propose(context.Background(), raftadaptertest.Put("x", "1")); !errors.Is(err, raftadapter.ErrRemoved) {
		t.Fatalf("Propose on removed member: err = %v, want ErrRemoved", err)
	}
	remaining := c.others(lead, follower)
	newLead := c.waitLeader(remaining...)
	c.put(newLead, "after-removal", "1")
	c.waitFor("remaining converge", 10, func() bool { return c.converged(remaining...) })
}

func TestMembershipInvalidChanges(t *testing.T) {
	c := newCluster(t, 1, raftadaptertest.NetworkConfig{}, nil)
	c.waitLeader()
	n := c.nodes[1]
	ctx := context.Background()
	if err := c.change("remove last voter", func(ctx context.Context) error { return n.RemoveMember(ctx, 1) }); !errors.Is(err, raftadapter.ErrInvalidConfChange) {
		t.Errorf("removing the last voter: err = %v, want ErrInvalidConfChange", err)
	}
	if err := n.AddLearner(ctx, 0, nil); !errors.Is(err, raftadapter.ErrInvalidConfChange) {
		t.Errorf("AddLearner(0): err = %v, want ErrInvalidConfChange", err)
	}
	if err := n.AddLearner(ctx, 1, nil); !errors.Is(err, raftadapter.ErrMemberExists) {
		t.Errorf("AddLearner(self): err = %v, want ErrMemberExists", err)
	}
	// Changes queue up and are applied one at a time, in order.
	errs := make([]<-chan error, 3)
	errs[0] = async(func() error { return n.AddLearner(ctx, 2, nil) })
	errs[1] = async(func() error { return n.AddLearner(ctx, 3, nil) })
	errs[2] = async(func() error { return n.RemoveMember(ctx, 2) })
	for i, ch := range errs {
		if err := c.await("queued change", 30, ch); err != nil {
			// RemoveMember(2) may run before AddLearner(2) since the calls race;
			// anything else must succeed.
			if i != 2 || !errors.Is(err, raftadapter.ErrUnknownMember) {
				t.Errorf("change %d: %v", i, err)
			}
		}
	}
	if st := n.Status(); !slices.Contains(st.Learners, 3) || len(st.Voters) != 1 {
		t.Errorf("membership = voters %v learners %v", st.Voters, st.Learners)
	}
}
