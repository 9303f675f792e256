package raftadapter_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/meshkv/meshkv/raftadapter"
	"github.com/meshkv/meshkv/raftadapter/raftadaptertest"
)

func TestFollowerCatchesUpBySnapshot(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, func(cfg *raftadapter.Config) {
		cfg.SnapshotCount = 20
		cfg.SnapshotCatchUpEntries = 5
	})
	lead := c.waitLeader()
	lagging := c.others(lead)[0]
	c.put(lead, "first", "1")
	c.waitFor("all have the first write", 3, func() bool { return c.converged(c.ids...) })

	c.net.Isolate(lagging)
	for i := range 100 {
		c.put(lead, "k"+strconv.Itoa(i), strconv.Itoa(i))
		// Let a snapshot being written finish before the next put, or a slow
		// snapshot writer may merge several due snapshots into one.
		c.settle()
	}
	c.settle()
	st := c.nodes[lead].Status()
	if st.SnapshotIndex < 80 || st.Metrics.SnapshotsTaken < 4 {
		t.Fatalf("leader snapshot index %d after %d snapshots; want >= 80 and >= 4", st.SnapshotIndex, st.Metrics.SnapshotsTaken)
	}

	c.net.Rejoin(lagging)
	c.waitFor("lagging follower catches up", 30, func() bool { return c.converged(c.ids...) })
	if got := c.kvs[lagging].Restores(); got < 1 {
		t.Fatalf("lagging follower restored %d snapshots, want >= 1", got)
	}
	ls := c.nodes[lagging].Status()
	if ls.Metrics.SnapshotsRestored < 1 || ls.SnapshotIndex == 0 {
		t.Fatalf("lagging follower status: %d restored, snapshot index %d", ls.Metrics.SnapshotsRestored, ls.SnapshotIndex)
	}
	// Membership came with the snapshot (raft's ConfState and the state
	// machine's own record of members).
	if len(ls.Voters) != 3 {
		t.Fatalf("voters after restore = %v", ls.Voters)
	}
	if got := len(c.kvs[lagging].Members()); got != 3 {
		t.Fatalf("members recorded in restored state = %d, want 3", got)
	}
	// It keeps working as a normal member afterwards.
	c.put(lagging, "after", "1")
	if err := c.nodes[lagging].ReadIndex(context.Background()); err != nil {
		t.Fatalf("ReadIndex: %v", err)
	}
	c.waitFor("converged", 5, func() bool { return c.converged(c.ids...) })
}

// A member added long after the log was compacted starts from a snapshot.
func TestNewMemberStartsFromSnapshot(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, func(cfg *raftadapter.Config) {
		cfg.SnapshotCount = 10
		cfg.SnapshotCatchUpEntries = 2
	})
	lead := c.waitLeader()
	for i := range 40 {
		c.put(lead, "k"+strconv.Itoa(i), "v")
	}
	c.start(4, nil)
	if err := c.change("add learner", func(ctx context.Context) error {
		return c.nodes[lead].AddLearner(ctx, 4, []byte("ctx4"))
	}); err != nil {
		t.Fatalf("AddLearner: %v", err)
	}
	c.waitFor("new member caught up", 30, func() bool { return c.converged(c.ids...) })
	if c.kvs[4].Restores() == 0 {
		t.Fatal("new member did not start from a snapshot")
	}
	if got := c.kvs[4].Members()[4]; got != "ctx4" {
		t.Fatalf("new member's record of itself = %q, want ctx4", got)
	}
}
