package meshkv_test

// Node behaviour on a single node and on 3-node clusters on the in-memory
// network (startMemCluster), under -race.

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/netproxy"
)

// TestStandaloneStats checks Node.Stats on a node without a mesh:
// snapshots are taken every SnapshotCount entries and the log above the
// newest one stays shorter than that.
func TestStandaloneStats(t *testing.T) {
	nd := startNode(t, meshkv.Config{SnapshotCount: 10})
	for i := range 55 {
		if err := put(nd.Client(), "k", strconv.Itoa(i), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "five snapshots", func() bool { return nd.Stats().SnapshotsTaken >= 5 })
	s := nd.Stats()
	if s.Leader != nd.ID() || s.Term == 0 {
		t.Errorf("leader %x term %d, want itself and a term", s.Leader, s.Term)
	}
	if s.Revision != 56 || s.CompactRevision != 0 {
		t.Errorf("revision %d compact %d, want 56 and 0", s.Revision, s.CompactRevision)
	}
	if s.SnapshotIndex == 0 || s.SnapshotIndex > s.AppliedIndex || s.LogEntries != s.CommitIndex-s.SnapshotIndex {
		t.Errorf("inconsistent indexes: %+v", s)
	}
	if s.LogEntries >= 2*10 {
		t.Errorf("%d entries above the snapshot, want fewer than 2×SnapshotCount", s.LogEntries)
	}
	if s.SnapshotsRestored != 0 || s.Mesh != (meshkv.MeshStats{}) {
		t.Errorf("a standalone node restored snapshots or has mesh counters: %+v", s)
	}
	if _, err := nd.Client().Compact(ctxTimeout(t, 5*time.Second), 30); err != nil {
		t.Fatal(err)
	}
	if got := nd.Stats().CompactRevision; got != 30 {
		t.Errorf("compact revision %d after Compact(30)", got)
	}
}

// An isolated leader steps down; the majority elects a new one; requests
// pending on the old leader fail instead of succeeding stale.
func TestLeaderIsolation(t *testing.T) {
	tc := startMemCluster(t, 301, 3, 3, nil)
	l := tc.leader()
	for j := range 3 {
		if j != l {
			tc.cut(l, j, netproxy.Blackhole)
		}
	}
	nl := tc.leader(l)
	if err := put(tc.nodes[nl].Client(), "isolated", "new", 5*time.Second); err != nil {
		t.Fatalf("majority cannot write: %v", err)
	}
	if err := put(tc.nodes[l].Client(), "isolated", "stale", 2*time.Second); err == nil {
		t.Fatal("the isolated old leader acknowledged a write")
	}
	if v, err := getValue(tc.nodes[l].Client(), "isolated", 2*time.Second); err == nil {
		t.Fatalf("the isolated old leader served a linearizable read: %q", v)
	}
	waitFor(t, 10*time.Second, "the isolated leader to step down", func() bool {
		st, err := tc.nodes[l].Client().Status(ctxTimeout(t, time.Second), "x")
		return err == nil && st.Leader != tc.nodes[l].ID()
	})
	for j := range 3 {
		if j != l {
			tc.heal(l, j)
		}
	}
	waitFor(t, 20*time.Second, "the old leader to catch up", func() bool {
		v, err := getValue(tc.nodes[l].Client(), "isolated", time.Second)
		return err == nil && v == "new"
	})
}

// Five nodes with an initial cluster size of three, started in random order
// with random delays, always form exactly one cluster that all five belong to.
func TestBootstrapExactlyOneCluster(t *testing.T) {
	reps := 20
	if testing.Short() {
		reps = 3
	}
	for r := range reps {
		t.Run(fmt.Sprint(r), func(t *testing.T) {
			tc := startMemCluster(t, 400+uint64(r), 5, 3, nil)
			cid := tc.nodes[0].ClusterID()
			for i, nd := range tc.nodes {
				if nd.ClusterID() != cid {
					t.Fatalf("node %d is in cluster %x, node 0 in %x", i, nd.ClusterID(), cid)
				}
			}
			waitFor(t, 20*time.Second, "all five to be members", func() bool {
				ml, err := tc.nodes[0].Client().MemberList(ctxTimeout(t, time.Second))
				return err == nil && len(ml.Members) == 5
			})
		})
	}
}
