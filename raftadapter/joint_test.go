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

// addLearners starts nodes ids as joiners and adds them as learners of the
// cluster led by lead, waiting until they caught up.
func (c *cluster) addLearners(lead uint64, ids ...uint64) {
	c.t.Helper()
	for _, id := range ids {
		c.start(id, nil)
		if err := c.change("add learner", func(ctx context.Context) error {
			return c.nodes[lead].AddLearner(ctx, id, nil)
		}); err != nil {
			c.t.Fatalf("AddLearner(%d): %v", id, err)
		}
	}
	c.waitFor("learners catch up", 30, func() bool { return c.converged(c.ids...) })
}

// waitSettledConf waits until every node applied a configuration with
// exactly voters and no joint or pending change on the leader.
func (c *cluster) waitSettledConf(lead uint64, voters []uint64, nodes ...uint64) {
	c.t.Helper()
	c.waitFor("joint configuration left", 30, func() bool {
		if st := c.nodes[lead].Status(); st.ConfChangePending || len(st.VotersOutgoing) > 0 {
			return false
		}
		for _, id := range nodes {
			st := c.nodes[id].Status()
			if !slices.Equal(st.Voters, voters) || len(st.VotersOutgoing) > 0 {
				return false
			}
		}
		return true
	})
}

// One voter grows to three in one joint change: no member ever applies a
// configuration with two voters.
func TestJointGrowthSkipsTwoVoters(t *testing.T) {
	c := newCluster(t, 1, raftadaptertest.NetworkConfig{}, nil)
	lead := c.waitLeader()
	c.put(lead, "k", "v")
	c.addLearners(lead, 2, 3)
	l := c.nodes[lead]
	err := c.change("promote 2 and 3", func(ctx context.Context) error {
		return l.ChangeMembership(ctx, []raftadapter.ConfChange{
			{Kind: raftadapter.PromoteChange, ID: 2}, {Kind: raftadapter.PromoteChange, ID: 3},
		}, nil)
	})
	if err != nil {
		t.Fatalf("ChangeMembership: %v", err)
	}
	if st := l.Status(); !st.ConfChangePending && len(st.VotersOutgoing) == 0 && !slices.Equal(st.Voters, []uint64{1, 2, 3}) {
		t.Fatalf("after the joint change: voters %v outgoing %v pending %v", st.Voters, st.VotersOutgoing, st.ConfChangePending)
	}
	c.waitSettledConf(lead, []uint64{1, 2, 3}, 1, 2, 3)
	for _, id := range c.ids {
		for _, v := range c.kvs[id].VoterCounts() {
			if v == 2 {
				t.Fatalf("node %d applied a configuration with 2 voters: %v", id, c.kvs[id].VoterCounts())
			}
		}
	}
	// The new voters count: with the old voter gone, the two still commit.
	c.net.Detach(1)
	newLead := c.waitLeader(2, 3)
	c.put(newLead, "after", "1")
}

// A dead voter is replaced in one joint change (remove it, promote a
// learner); it is then in every member's removed set, also on a member
// that joins later and learns the state from a snapshot.
func TestJointReplaceAndRemovedSet(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, func(cfg *raftadapter.Config) {
		cfg.SnapshotCount, cfg.SnapshotCatchUpEntries = 5, 2
	})
	lead := c.waitLeader()
	c.addLearners(lead, 4)
	victim := c.others(lead)[0]
	l := c.nodes[lead]
	c.net.Detach(victim)
	err := c.change("replace", func(ctx context.Context) error {
		return l.ChangeMembership(ctx, []raftadapter.ConfChange{
			{Kind: raftadapter.RemoveChange, ID: victim}, {Kind: raftadapter.PromoteChange, ID: 4},
		}, nil)
	})
	if err != nil {
		t.Fatalf("ChangeMembership: %v", err)
	}
	live := c.others(victim)
	voters := slices.Sorted(slices.Values(live))
	c.waitSettledConf(lead, voters, live...)
	for _, id := range live {
		if !c.nodes[id].WasRemoved(victim) || c.nodes[id].WasRemoved(4) {
			t.Fatalf("node %d: removed(%d) %v, removed(4) %v", id, victim, c.nodes[id].WasRemoved(victim), c.nodes[id].WasRemoved(4))
		}
	}
	for i := range 20 {
		c.put(lead, "k"+strconv.Itoa(i), "v") // snapshots and compaction
	}
	c.start(5, nil)
	if err := c.change("add learner 5", func(ctx context.Context) error { return l.AddLearner(ctx, 5, nil) }); err != nil {
		t.Fatalf("AddLearner(5): %v", err)
	}
	c.waitFor("learner 5 catches up", 30, func() bool { return c.converged(append(live, 5)...) })
	if st := c.nodes[5].Status(); st.Metrics.SnapshotsRestored == 0 {
		t.Fatalf("learner 5 caught up without a snapshot (test needs one)")
	}
	if !c.nodes[5].WasRemoved(victim) {
		t.Fatalf("learner 5 restored from a snapshot without the removed set")
	}
}

// Invalid joint changes are refused as a whole.
func TestJointInvalid(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	lead := c.waitLeader()
	l := c.nodes[lead]
	others := c.others(lead)
	for _, tc := range []struct {
		name    string
		changes []raftadapter.ConfChange
		want    error
	}{
		{"no voter left", []raftadapter.ConfChange{{Kind: raftadapter.RemoveChange, ID: others[0]}, {Kind: raftadapter.RemoveChange, ID: others[1]}, {Kind: raftadapter.RemoveChange, ID: lead}}, raftadapter.ErrInvalidConfChange},
		{"unknown member", []raftadapter.ConfChange{{Kind: raftadapter.RemoveChange, ID: others[0]}, {Kind: raftadapter.PromoteChange, ID: 9}}, raftadapter.ErrUnknownMember},
		{"same member twice", []raftadapter.ConfChange{{Kind: raftadapter.RemoveChange, ID: others[0]}, {Kind: raftadapter.DemoteChange, ID: others[0]}}, raftadapter.ErrInvalidConfChange},
	} {
		if err := c.change(tc.name, func(ctx context.Context) error { return l.ChangeMembership(ctx, tc.changes, nil) }); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if st := l.Status(); len(st.Voters) != 3 || st.ConfChangePending {
		t.Fatalf("after refused changes: voters %v pending %v", st.Voters, st.ConfChangePending)
	}
}

// A member recovered from its own state starts a new log at the given
// index and term, with the given removed set, and goes on from there.
func TestBootstrapFromStateAtIndex(t *testing.T) {
	net := raftadaptertest.NewNetwork(raftadaptertest.NetworkConfig{})
	defer net.Close()
	kv := raftadaptertest.NewKV()
	kv.Apply(1, raftadaptertest.Put("kept", "1"))
	n, err := raftadapter.New(raftadapter.Config{
		ID: 7, Peers: []uint64{7}, BootstrapFromState: true, BootstrapIndex: 500, BootstrapTerm: 9,
		Removed: []uint64{3, 4}, DisableTicker: true, Logger: testLogger(t, 7),
	}, kv, net.Transport(7))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	net.Attach(7, n)
	for !n.Status().IsLeader {
		if err := n.Tick(); err != nil {
			t.Fatal(err)
		}
	}
	st := n.Status()
	if st.AppliedIndex < 500 || st.Term <= 9 || !slices.Equal(st.Voters, []uint64{7}) {
		t.Fatalf("status %+v", st)
	}
	if !n.WasRemoved(3) || !n.WasRemoved(4) || n.WasRemoved(7) {
		t.Fatal("removed set not as configured")
	}
	res, err := n.Propose(context.Background(), raftadaptertest.Put("new", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if idx := res.(raftadaptertest.PutResult).Index; idx <= 500 {
		t.Fatalf("new entry at index %d, want beyond the recovered 500", idx)
	}
	if v, _ := kv.Get("kept"); v != "1" {
		t.Fatal("recovered state lost")
	}
	for _, bad := range []raftadapter.Config{
		{ID: 7, Peers: []uint64{7}, BootstrapIndex: 5},
		{ID: 7, Peers: []uint64{7}, BootstrapFromState: true, Removed: []uint64{7}},
		{ID: 7, BootstrapFromState: true, BootstrapIndex: 5},
	} {
		if err := bad.Validate(); !errors.Is(err, raftadapter.ErrInvalidConfig) {
			t.Errorf("%+v: err = %v", bad, err)
		}
	}
}
