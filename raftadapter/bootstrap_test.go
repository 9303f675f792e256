package raftadapter_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshkv/meshkv/raftadapter"
	"github.com/meshkv/meshkv/raftadapter/raftadaptertest"
)

// seedValue is big enough that a snapshot is the only way it travels.
var seedValue = strings.Repeat("s", 10_000)

// seededKV is a state machine that already holds state before raft starts:
// one key applied at index 1.
func seededKV() *raftadaptertest.KV {
	kv := raftadaptertest.NewKV()
	kv.Apply(1, raftadaptertest.Put("seed", seedValue))
	return kv
}

// startFromState starts node id over kv, bootstrapping peers from the
// state kv holds.
func (c *cluster) startFromState(id uint64, peers []uint64, kv *raftadaptertest.KV) *raftadapter.Node {
	c.t.Helper()
	cfg := raftadapter.Config{
		ID:                 id,
		Peers:              peers,
		BootstrapFromState: true,
		DisableTicker:      true,
		ElectionTicks:      10,
		HeartbeatTicks:     1,
		CloseTimeout:       500 * time.Millisecond,
		Logger:             testLogger(c.t, id),
	}
	n, err := raftadapter.New(cfg, kv, c.net.Transport(id))
	if err != nil {
		c.t.Fatalf("New(%d): %v", id, err)
	}
	c.net.Attach(id, n)
	c.nodes[id] = n
	c.kvs[id] = kv
	c.ids = append(c.ids, id)
	return n
}

func emptyCluster(t *testing.T) *cluster {
	c := newCluster(t, 0, raftadaptertest.NetworkConfig{}, nil)
	return c
}

// A lone founder that starts from its state leads at once, its log begins
// with a snapshot of that state, and members that join receive the state as
// a snapshot (the log that built it does not exist).
func TestBootstrapFromStateLoneFounder(t *testing.T) {
	c := emptyCluster(t)
	founder := c.startFromState(1, []uint64{1}, seededKV())
	c.settle()
	st := founder.Status()
	if !st.IsLeader || st.AppliedIndex < 1 || st.SnapshotIndex != 1 || !slices.Equal(st.Voters, []uint64{1}) {
		t.Fatalf("founder status %+v", st)
	}
	c.put(1, "after", "1")
	for _, id := range []uint64{2, 3} {
		c.start(id, nil)
		if err := c.change("add learner", func(ctx context.Context) error { return founder.AddLearner(ctx, id, nil) }); err != nil {
			t.Fatalf("AddLearner(%d): %v", id, err)
		}
		if err := c.change("promote", func(ctx context.Context) error { return founder.Promote(ctx, id) }); err != nil {
			t.Fatalf("Promote(%d): %v", id, err)
		}
	}
	c.waitFor("joiners converge", 50, func() bool { return c.converged(1, 2, 3) })
	for _, id := range []uint64{2, 3} {
		if v, _ := c.kvs[id].Get("seed"); v != seedValue {
			t.Fatalf("member %d lacks the founder's state", id)
		}
		if c.kvs[id].Restores() != 1 {
			t.Fatalf("member %d restored %d snapshots, want 1", id, c.kvs[id].Restores())
		}
	}
	// The founder can step down: the others carry the state on.
	c.put(2, "later", "2")
	c.waitFor("converge", 50, func() bool { return c.converged(1, 2, 3) })
}

// Several founders holding the same state bootstrap together from it.
func TestBootstrapFromStateSeveralFounders(t *testing.T) {
	c := emptyCluster(t)
	voters := []uint64{1, 2, 3}
	for _, id := range voters {
		c.startFromState(id, voters, seededKV())
	}
	lead := c.waitLeader()
	c.put(lead, "k", "v")
	c.waitFor("converge", 50, func() bool { return c.converged(voters...) })
	c.start(4, nil)
	if err := c.change("add learner", func(ctx context.Context) error { return c.nodes[lead].AddLearner(ctx, 4, nil) }); err != nil {
		t.Fatal(err)
	}
	c.waitFor("joiner converges", 50, func() bool { return c.converged(1, 2, 3, 4) })
	if v, _ := c.kvs[4].Get("seed"); v != seedValue || c.kvs[4].Restores() != 1 {
		t.Fatalf("joiner: seed present %v, restores %d", v == seedValue, c.kvs[4].Restores())
	}
}
