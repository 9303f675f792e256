package raftadapter_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

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

// maxTokenLen bounds the Data of the snapshot kept in raft's storage: a token,
// not the state.
const maxTokenLen = 16

// checkTokenStored fails unless node id's storage holds a token snapshot at
// its Status().SnapshotIndex and no built snapshot data is held.
func (c *cluster) checkTokenStored(id uint64) {
	c.t.Helper()
	st := c.nodes[id].Status()
	snap := c.nodes[id].StoredSnapshotForTest()
	if st.SnapshotIndex == 0 || snap.GetMetadata().GetIndex() != st.SnapshotIndex {
		c.t.Fatalf("node %d: stored snapshot index %d, status snapshot index %d", id, snap.GetMetadata().GetIndex(), st.SnapshotIndex)
	}
	if len(snap.GetData()) > maxTokenLen {
		c.t.Fatalf("node %d: stored snapshot holds %d bytes of data, want a token of at most %d", id, len(snap.GetData()), maxTokenLen)
	}
	if held := st.Metrics.SnapshotBytesHeld; held != 0 {
		c.t.Fatalf("node %d: %d snapshot bytes held at rest, want 0", id, held)
	}
}

// Snapshots keep the state machine's capture, not its serialized bytes: at
// rest, neither the leader nor a restored follower holds snapshot data.
func TestStoredSnapshotHoldsNoData(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, func(cfg *raftadapter.Config) {
		cfg.SnapshotCount = 20
		cfg.SnapshotCatchUpEntries = 5
	})
	lead := c.waitLeader()
	lagging := c.others(lead)[0]
	c.net.Isolate(lagging)
	value := strings.Repeat("v", 64<<10)
	for i := range 80 { // about 5 MB of state
		c.put(lead, "k"+strconv.Itoa(i), value)
	}
	c.settle()
	if m := c.nodes[lead].Status().Metrics; m.SnapshotsTaken < 3 || m.SnapshotsWritten != 0 {
		t.Fatalf("leader took %d snapshots and built data %d times; want >= 3 and 0 (nobody needed one)",
			m.SnapshotsTaken, m.SnapshotsWritten)
	}
	c.checkTokenStored(lead)

	c.net.Rejoin(lagging)
	c.waitFor("lagging follower catches up", 30, func() bool { return c.converged(c.ids...) })
	if c.kvs[lagging].Restores() == 0 {
		t.Fatal("lagging follower did not restore a snapshot")
	}
	if m := c.nodes[lead].Status().Metrics; m.SnapshotsWritten == 0 || m.SnapshotsSent == 0 {
		t.Fatalf("leader built %d and sent %d snapshots, want >= 1", m.SnapshotsWritten, m.SnapshotsSent)
	}
	c.settle()
	c.checkTokenStored(lead)
	c.checkTokenStored(lagging)
}

// Followers that need the same snapshot at the same time share one build of
// its data, kept only while sends are in flight; a newer snapshot releases it.
func TestSnapshotSendsShareData(t *testing.T) {
	c := newCluster(t, 5, raftadaptertest.NetworkConfig{}, func(cfg *raftadapter.Config) {
		cfg.SnapshotCount = 20
		cfg.SnapshotCatchUpEntries = 2
	})
	lead := c.waitLeader()
	lagging := c.others(lead)[:2]
	for _, id := range lagging {
		c.net.Isolate(id)
	}
	for i := range 30 {
		c.put(lead, "k"+strconv.Itoa(i), strings.Repeat("v", 1000))
	}
	c.settle()
	c.net.Intercept(func(_ uint64, m *raftpb.Message) raftadaptertest.Action {
		if m.GetType() == raftpb.MsgSnap {
			return raftadaptertest.Hold
		}
		return raftadaptertest.Deliver
	})
	for _, id := range lagging {
		c.net.Rejoin(id)
	}
	c.waitFor("both snapshots sent", 30, func() bool { return c.net.Stats().Held == 2 })
	m := c.nodes[lead].Status().Metrics
	if m.SnapshotsWritten != 1 || m.SnapshotsSent != 2 {
		t.Fatalf("leader built %d and sent %d snapshots; want 1 build shared by 2 sends", m.SnapshotsWritten, m.SnapshotsSent)
	}
	if m.SnapshotBytesHeld == 0 {
		t.Fatal("no snapshot data held while its sends are in flight")
	}
	// A newer snapshot makes the held data useless: it is released.
	for i := range 25 {
		c.put(lead, "more"+strconv.Itoa(i), "v")
	}
	c.settle()
	if got := c.nodes[lead].Status().Metrics.SnapshotBytesHeld; got != 0 {
		t.Fatalf("%d snapshot bytes held after a newer snapshot, want 0", got)
	}
	c.net.Intercept(nil)
	c.net.Release()
	c.waitFor("lagging followers catch up", 30, func() bool { return c.converged(c.ids...) })
	for _, id := range lagging {
		if c.kvs[id].Restores() == 0 {
			t.Fatalf("node %d did not restore a snapshot", id)
		}
	}
	c.settle()
	for _, id := range c.ids {
		c.checkTokenStored(id)
	}
}

// A member restored from a snapshot keeps a capture of the restored state and
// serves that snapshot itself once it leads.
func TestRestoredMemberSendsSnapshot(t *testing.T) {
	c := newCluster(t, 5, raftadaptertest.NetworkConfig{}, func(cfg *raftadapter.Config) {
		cfg.SnapshotCount = 50
		cfg.SnapshotCatchUpEntries = 2
	})
	lead := c.waitLeader()
	others := c.others(lead)
	restored, behind := others[0], others[1]
	c.net.Isolate(restored)
	c.net.Isolate(behind)
	for i := range 60 {
		c.put(lead, "k"+strconv.Itoa(i), "v"+strconv.Itoa(i))
	}
	c.settle()
	c.net.Rejoin(restored)
	c.waitFor("restored member catches up", 30, func() bool { return c.converged(lead, restored) })
	if c.kvs[restored].Restores() == 0 {
		t.Fatal("member did not restore a snapshot")
	}
	c.checkTokenStored(restored)
	snapIndex := c.nodes[restored].Status().SnapshotIndex
	if err := c.await("transfer", 30, async(func() error {
		return c.nodes[lead].TransferLeadership(context.Background(), restored)
	})); err != nil {
		t.Fatalf("TransferLeadership: %v", err)
	}
	c.net.Rejoin(behind)
	c.waitFor("member behind catches up", 30, func() bool { return c.converged(c.ids...) })
	if c.kvs[behind].Restores() == 0 {
		t.Fatal("member behind did not restore a snapshot")
	}
	m := c.nodes[restored].Status().Metrics
	if m.SnapshotsTaken != 0 || m.SnapshotsWritten == 0 {
		t.Fatalf("new leader took %d snapshots and built %d; want 0 and >= 1 (from its restored capture)", m.SnapshotsTaken, m.SnapshotsWritten)
	}
	if got := c.nodes[behind].Status().SnapshotIndex; got != snapIndex {
		t.Fatalf("member behind restored snapshot index %d, want %d (the new leader's restored one)", got, snapIndex)
	}
	c.settle()
	c.checkTokenStored(behind)
}
