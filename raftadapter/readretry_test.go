package raftadapter_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/raftadapter"
	"github.com/meshkv/meshkv/raftadapter/raftadaptertest"
)

// A leader that was cut off and paused does not know it was deposed. The
// tests below bring late copies of read-index traffic to such a leader after
// the new leader committed a write, and check that a read started after that
// write is never answered from the old state: it may only return once its
// node has applied the write.

// TestStaleLeaderIgnoresDuplicateReadIndex: a follower's read-index request
// and the heartbeat answers that confirmed it are delivered twice by the
// network, the second time to the deposed leader after a newer read queued
// there. The late answers acknowledge the duplicated request only; they must
// not confirm the newer read.
func TestStaleLeaderIgnoresDuplicateReadIndex(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	old := c.waitLeader()
	rest := c.others(old)
	c.put(old, "k", "v0")
	c.waitFor("converged", 5, func() bool { return c.converged(c.ids...) })

	// A read on a follower: the network delivers its request and the
	// heartbeat answers that confirm it, and keeps a second copy of each.
	reader := rest[0]
	c.net.Intercept(func(from uint64, m *raftpb.Message) raftadaptertest.Action {
		if (m.GetType() == raftpb.MsgReadIndex && from == reader) || (m.GetType() == raftpb.MsgHeartbeatResp && len(m.GetContext()) > 0) {
			return raftadaptertest.Duplicate
		}
		return raftadaptertest.Deliver
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.nodes[reader].ReadIndex(ctx); err != nil {
		t.Fatalf("ReadIndex via %d: %v", reader, err)
	}
	c.settle()
	c.net.Intercept(nil)
	if held := c.net.Stats().Held; held != 3 {
		t.Fatalf("held copies = %d, want 3 (the request and two heartbeat answers)", held)
	}

	// The leader is cut off and paused (not ticked); the rest elect a new
	// leader, which commits a write.
	for _, id := range rest {
		c.net.Disconnect(old, id)
	}
	lead := electAmong(c, rest)
	c.put(lead, "k", "v1")
	c.settle()
	if !c.nodes[old].Status().IsLeader {
		t.Fatalf("node %d stepped down; the scenario needs a deposed leader that does not know it", old)
	}

	// A read on the deposed leader, started after the write returned.
	readB := startRead(t, c, old)

	// The late copies reach the deposed leader; its own messages still do
	// not get out.
	for _, id := range rest {
		c.net.Uncut(id, old)
	}
	if n := c.net.Release(); n != 3 {
		t.Fatalf("released %d copies, want 3", n)
	}
	c.settle()
	checkNotStale(t, c, old, readB)

	for _, id := range rest {
		c.net.Connect(old, id)
	}
	awaitFreshRead(t, c, old, readB)
}

// TestStaleLeaderRetriedReadRound: the deposed leader's own read round gets
// no answer (the heartbeat answers are delayed in the network), so after an
// election timeout it asks again, for that read and for one started after
// the new leader's write. The delayed answers then arrive: they confirm the
// first attempt only, which must not answer the reads of the retry.
func TestStaleLeaderRetriedReadRound(t *testing.T) {
	const electionTicks = 10
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, func(cfg *raftadapter.Config) { cfg.ElectionTicks = electionTicks })
	old := c.waitLeader()
	rest := c.others(old)
	c.put(old, "k", "v0")
	c.waitFor("converged", 5, func() bool { return c.converged(c.ids...) })

	// A read on the leader whose heartbeat answers are delayed.
	c.net.Intercept(func(_ uint64, m *raftpb.Message) raftadaptertest.Action {
		if m.GetType() == raftpb.MsgHeartbeatResp && len(m.GetContext()) > 0 && m.GetTo() == old {
			return raftadaptertest.Hold
		}
		return raftadaptertest.Deliver
	})
	base := c.nodes[old].Status().Metrics
	readA := startRead(t, c, old)
	c.net.Intercept(nil)
	if held := c.net.Stats().Held; held != 2 {
		t.Fatalf("held heartbeat answers = %d, want 2", held)
	}

	// The leader is cut off and paused; the rest elect a new leader, which
	// commits a write.
	for _, id := range rest {
		c.net.Disconnect(old, id)
	}
	lead := electAmong(c, rest)
	c.put(lead, "k", "v1")
	c.settle()
	readB := startRead(t, c, old)

	// The deposed leader resumes. After an election timeout without an
	// answer it retries its read round, before its own quorum check is due
	// again (the followers were active during the last period).
	for range electionTicks {
		c.tick(old)
		c.settle()
	}
	st := c.nodes[old].Status()
	if !st.IsLeader || st.Metrics.ReadRounds != base.ReadRounds+2 {
		t.Fatalf("node %d: leader %v, read rounds %d; the scenario needs a retried round on a deposed leader",
			old, st.IsLeader, st.Metrics.ReadRounds-base.ReadRounds)
	}

	// The delayed answers to the first attempt arrive.
	for _, id := range rest {
		c.net.Uncut(id, old)
	}
	if n := c.net.Release(); n != 2 {
		t.Fatalf("released %d answers, want 2", n)
	}
	c.settle()
	checkNotStale(t, c, old, readB)

	for _, id := range rest {
		c.net.Connect(old, id)
	}
	awaitFreshRead(t, c, old, readB)
	if err := result(t, readA, "first read"); err != nil {
		t.Fatalf("first read: %v", err)
	}
}

// electAmong ticks only ids until they agree on a leader among them.
func electAmong(c *cluster, ids []uint64) uint64 {
	c.t.Helper()
	for range 300 {
		c.settle()
		if lead := c.leaderAmong(ids...); lead != 0 {
			return lead
		}
		c.tick(ids...)
	}
	c.t.Fatalf("no leader among %v", ids)
	return 0
}

// startRead starts a ReadIndex on node id and waits until the node queued it.
func startRead(t *testing.T, c *cluster, id uint64) <-chan error {
	t.Helper()
	n := c.nodes[id]
	before := n.Status().Metrics.ReadRequests
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	ch := async(func() error { return n.ReadIndex(ctx) })
	eventually(t, 10*time.Second, "read queued", func() bool { return n.Status().Metrics.ReadRequests > before })
	c.settle()
	return ch
}

// checkNotStale fails the test if the read on node id has returned while the
// node has not applied the new leader's write.
func checkNotStale(t *testing.T, c *cluster, id uint64, read <-chan error) {
	t.Helper()
	select {
	case err := <-read:
		v, _ := c.kvs[id].Get("k")
		if err == nil && v != "v1" {
			t.Fatalf("stale read: node %d answered a read started after the write of v1 with k = %q", id, v)
		}
		t.Fatalf("node %d ended a read while cut off from the quorum: err %v, k = %q; want it waiting", id, err, v)
	default:
	}
}

// awaitFreshRead waits for the read on node id and checks it sees the write.
func awaitFreshRead(t *testing.T, c *cluster, id uint64, read <-chan error) {
	t.Helper()
	if err := c.await("read on the former leader", 200, read); err != nil {
		t.Fatalf("read on node %d: %v", id, err)
	}
	if v, _ := c.kvs[id].Get("k"); v != "v1" {
		t.Fatalf("read on node %d after healing saw k = %q, want v1", id, v)
	}
	if lead := c.waitLeader(); !slices.Contains(c.ids, lead) {
		t.Fatalf("no leader after healing")
	}
}
