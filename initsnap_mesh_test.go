//go:build !race

// Real mesh routers: see mesh_test.go for why these tests skip -race.

package meshkv_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/meshkv/meshkv"
)

// A cluster founded from a snapshot hands the state to the members that
// join it through raft, and every member serves it.
func TestMeshInitialSnapshotReachesJoiners(t *testing.T) {
	src := startNode(t, meshkv.Config{})
	fillNode(t, src.Client())
	path := saveSnapshot(t, src.Client())
	want := dumpOf(t, src.Client(), false)

	tc := startCluster(t, 1, 1, fullMesh, func(i int, c *meshkv.Config) { c.InitialSnapshot = path })
	tc.add(t)
	tc.add(t)
	tc.waitVoters(3, 30*time.Second)
	for i, nd := range tc.nodes {
		// A linearizable read first, so that the member has applied the
		// cluster's log; then what it holds itself.
		got := dumpOf(t, nd.Client(), false)
		sameDump(t, got, want)
		sameDump(t, dumpOf(t, nd.Client(), true), want)
		t.Logf("member %d (%x) holds the snapshot's state", i, nd.ID())
	}
}

// A node given a snapshot that finds an existing cluster of its name
// refuses to join it.
func TestMeshInitialSnapshotRefusesToJoin(t *testing.T) {
	tc := startCluster(t, 1, 1, fullMesh, nil)
	path := saveSnapshot(t, tc.nodes[0].Client())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nd, err := meshkv.Start(ctx, meshkv.Config{
		Name:            "joiner",
		ClusterName:     tc.name,
		MeshListen:      "127.0.0.1:0",
		Peers:           []string{tc.nodes[0].MeshAddr()},
		InitialSnapshot: path,
		TickInterval:    testTick,
		ElectionTimeout: testElection,
		Logger:          testLogger(t, "joiner"),
	})
	if err == nil {
		nd.Close()
		t.Fatal("a node with an initial snapshot joined an existing cluster")
	}
	if !errors.Is(err, meshkv.ErrInitialSnapshotJoin) {
		t.Fatalf("err %v, want ErrInitialSnapshotJoin", err)
	}
}
