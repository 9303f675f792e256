//go:build !race

// Real mesh routers: see mesh_test.go for why these tests skip -race.

package meshkv_test

import (
	"fmt"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/meshtransport"
)

// TestMeshHostilePeerCannotHurtCluster: a node that holds the cluster
// secret, but is no member, links to a running cluster and sends raft
// messages that would take it over or stop it: appends and heartbeats in
// the leader's name, a higher-term snapshot and heartbeat in its own name,
// a TimeoutNow. The cluster keeps its leader, its term, its data and its
// availability.
func TestMeshHostilePeerCannotHurtCluster(t *testing.T) {
	const secret = "the cluster secret, long and random enough"
	tc := startCluster(t, 3, 3, fullMesh, func(i int, c *meshkv.Config) { c.MeshPassword = []byte(secret) })
	cli := tc.nodes[0].Client()
	for i := range 20 {
		if err := put(cli, fmt.Sprintf("k%d", i), "v", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	before := tc.nodes[0].Stats()
	att, err := meshtransport.New(meshtransport.Config{
		ListenAddr: "127.0.0.1:0", Peers: []string{tc.nodes[0].MeshAddr(), tc.nodes[1].MeshAddr(), tc.nodes[2].MeshAddr()},
		Password: []byte(secret), ClusterName: tc.name, NickName: "attacker", Logger: testLogger(t, "attacker"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := att.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = att.Close() })
	waitFor(t, 10*time.Second, "the attacker links to every member", func() bool {
		n := 0
		for _, p := range att.Peers() {
			if !p.Self && p.Path == meshtransport.PathDirect && p.Meta.ClusterID != 0 {
				n++
			}
		}
		return n == 3
	})
	lead, term := before.Leader, before.Term
	self := uint64(att.RaftID())
	garbage := &raftpb.Snapshot{Data: []byte("not a snapshot"), Metadata: &raftpb.SnapshotMetadata{
		Index: new(uint64(1 << 30)), Term: new(term + 5), ConfState: &raftpb.ConfState{Voters: []uint64{self}}}}
	for round := range 20 {
		for _, n := range tc.nodes {
			to := n.ID()
			att.Send([]*raftpb.Message{
				{Type: raftpb.MsgApp.Enum(), From: new(lead), To: new(to), Term: new(term), Index: new(uint64(0)),
					Entries: []*raftpb.Entry{{Index: new(uint64(1)), Term: new(term), Data: []byte("forged")}}, Commit: new(uint64(1 << 30))},
				{Type: raftpb.MsgHeartbeat.Enum(), From: new(lead), To: new(to), Term: new(term + 10), Commit: new(uint64(1 << 30))},
				{Type: raftpb.MsgHeartbeat.Enum(), From: new(self), To: new(to), Term: new(term), Commit: new(uint64(1 << 30))},
				{Type: raftpb.MsgSnap.Enum(), From: new(self), To: new(to), Term: new(term + 5), Snapshot: garbage},
				{Type: raftpb.MsgTimeoutNow.Enum(), From: new(self), To: new(to), Term: new(term + uint64(round) + 1)},
			})
		}
		if err := put(cli, fmt.Sprintf("during%d", round), "v", 5*time.Second); err != nil {
			t.Fatalf("write %d during the attack: %v", round, err)
		}
	}
	for i, n := range tc.nodes {
		st := n.Stats()
		if st.Leader != lead || st.Term != term {
			t.Errorf("node %d: leader %x term %d, want %x and %d as before", i, st.Leader, st.Term, lead, term)
		}
		if err := n.Err(); err != nil {
			t.Errorf("node %d stopped: %v", i, err)
		}
	}
	for i := range 20 {
		if v, err := getValue(cli, fmt.Sprintf("k%d", i), 5*time.Second); err != nil || v != "v" {
			t.Fatalf("k%d = %q, %v", i, v, err)
		}
	}
}
