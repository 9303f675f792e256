//go:build !race

// These tests run real mesh routers on loopback. Mesh itself has data races
// (inside github.com/weaveworks/mesh: connection.established and
// Peer.NickName), so they are left out of -race runs; `make test-mesh` runs
// them without the race detector. They keep what needs the real mesh: its
// wiring into a node, relaying and routing, cuts of real connections and
// peer authentication. Node, lock, snapshot and membership behaviour is
// tested on the in-memory network with -race (testcluster_test.go, and
// the _mem_ tests inside the package).

package meshkv_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/netproxy"
)

func TestMeshClusterServesFromEveryMember(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			tc := startCluster(t, n, n, fullMesh, nil)
			cid := tc.nodes[0].ClusterID()
			for i, nd := range tc.nodes {
				if nd.ClusterID() != cid {
					t.Fatalf("node %d in cluster %x, node 0 in %x", i, nd.ClusterID(), cid)
				}
			}
			// Writes through each member; linearizable reads through every
			// member observe each write acknowledged before them.
			for i, w := range tc.nodes {
				key := fmt.Sprintf("k%d", i)
				if err := put(w.Client(), key, key, 5*time.Second); err != nil {
					t.Fatalf("put via %d: %v", i, err)
				}
				for j, r := range tc.nodes {
					if v, err := getValue(r.Client(), key, 5*time.Second); err != nil || v != key {
						t.Fatalf("read %s via %d after put via %d: %q %v", key, j, i, v, err)
					}
				}
			}
			ml, err := tc.nodes[0].Client().MemberList(ctxTimeout(t, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if len(ml.Members) != n {
				t.Fatalf("MemberList has %d members, want %d: %v", len(ml.Members), n, ml.Members)
			}
			for _, m := range ml.Members {
				if m.Name == "" {
					t.Errorf("member %x has no name: its metadata did not arrive by gossip", m.ID)
				}
			}
			// Every member reports the same leader and term.
			var leaders []uint64
			for _, nd := range tc.nodes {
				st, err := nd.Client().Status(ctxTimeout(t, 5*time.Second), "x")
				if err != nil {
					t.Fatal(err)
				}
				leaders = append(leaders, st.Leader)
			}
			slices.Sort(leaders)
			if len(slices.Compact(leaders)) != 1 {
				t.Fatalf("members disagree on the leader: %x", leaders)
			}
		})
	}
}

func TestMeshLeaderFailoverAndTransfer(t *testing.T) {
	tc := startCluster(t, 3, 3, fullMesh, nil)
	l := tc.leader()
	// etcdctl move-leader: only the leader accepts it.
	to := (l + 1) % 3
	if _, err := tc.nodes[to].Client().MoveLeader(ctxTimeout(t, 5*time.Second), tc.nodes[l].ID()); !errors.Is(err, rpctypes.ErrNotLeader) {
		t.Fatalf("move-leader sent to a follower: %v, want %v", err, rpctypes.ErrNotLeader)
	}
	if _, err := tc.nodes[l].Client().MoveLeader(ctxTimeout(t, 5*time.Second), tc.nodes[to].ID()); err != nil {
		t.Fatalf("move-leader: %v", err)
	}
	if got := tc.leader(); got != to {
		t.Fatalf("leader after move-leader = n%d, want n%d", got, to)
	}
	l = to
	if err := put(tc.nodes[(l+1)%3].Client(), "before", "1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Graceful close of the leader hands leadership over.
	start := time.Now()
	if err := tc.nodes[l].Close(); err != nil {
		t.Fatal(err)
	}
	nl := tc.leader(l)
	t.Logf("leadership moved from %d to %d in %v after a graceful close", l, nl, time.Since(start))
	if err := put(tc.nodes[nl].Client(), "after", "2", 5*time.Second); err != nil {
		t.Fatalf("put after failover: %v", err)
	}
	for i, nd := range tc.nodes {
		if i == l {
			continue
		}
		if v, err := getValue(nd.Client(), "before", 5*time.Second); err != nil || v != "1" {
			t.Fatalf("node %d lost the write acknowledged before the failover: %q %v", i, v, err)
		}
	}
}

// A–B–C with no A–C link: mesh relays through B.
func TestMeshLineTopology(t *testing.T) {
	tc := startCluster(t, 3, 3, line, nil)
	a, b, c := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	if err := put(a.Client(), "line", "via-a", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if v, err := getValue(c.Client(), "line", 5*time.Second); err != nil || v != "via-a" {
		t.Fatalf("linearizable read via C = %q, %v; want via-a", v, err)
	}
	// Without B, neither A nor C has a quorum: no commits, no stale reads.
	// B's links are cut first: a mesh router cannot be stopped inside a
	// process (only the process exit ends it), and a closed node's router
	// would go on relaying between A and C.
	tc.cut(0, 1, netproxy.Reset)
	tc.cut(1, 2, netproxy.Reset)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := put(a.Client(), "line", "lost", 3*time.Second); err == nil {
		t.Fatal("A committed a write without a quorum")
	}
	if _, err := getValue(c.Client(), "line", 3*time.Second); err == nil {
		t.Fatal("C served a linearizable read without a quorum")
	}
}

// A triangle whose A–C link is cut (both still reach B) keeps committing,
// and A and C keep serving linearizable reads and writes.
func TestMeshNonTransitiveCut(t *testing.T) {
	for _, mode := range []netproxy.Mode{netproxy.Reset, netproxy.Blackhole} {
		for _, cutLeader := range []bool{true, false} {
			t.Run(fmt.Sprintf("%v/leader-link=%v", mode, cutLeader), func(t *testing.T) {
				tc := startCluster(t, 3, 3, fullMesh, nil)
				l := tc.leader()
				// Choose A and C: the leader and another node, or the two followers.
				a, c := (l+1)%3, (l+2)%3
				if cutLeader {
					a = l
				}
				tc.cut(a, c, mode)
				cutAt := time.Now()
				gap := measureUnavailability(t, tc, []int{a, c}, 8*time.Second)
				t.Logf("%v cut of %d–%d (leader %d): longest write gap %v over %v", mode, a, c, l, gap, time.Since(cutAt))
				if gap > 3*testElection {
					t.Fatalf("writes stalled for %v, want at most about one election timeout (%v)", gap, testElection)
				}
				for _, i := range []int{a, c} {
					key := fmt.Sprintf("after-cut-%d", i)
					if err := put(tc.nodes[i].Client(), key, "x", 3*time.Second); err != nil {
						t.Fatalf("write via %d with the link cut: %v", i, err)
					}
					if v, err := getValue(tc.nodes[(i+1)%3].Client(), key, 3*time.Second); err != nil || v != "x" {
						t.Fatalf("read back via %d: %q %v", (i+1)%3, v, err)
					}
				}
			})
		}
	}
}

// measureUnavailability writes continuously through the given nodes for d
// and returns the longest time without any successful write.
func measureUnavailability(t *testing.T, tc *testCluster, via []int, d time.Duration) time.Duration {
	t.Helper()
	var (
		mu      sync.Mutex
		last    = time.Now()
		longest time.Duration
	)
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for _, i := range via {
		wg.Go(func() {
			for n := 0; time.Now().Before(end); n++ {
				if err := put(tc.nodes[i].Client(), fmt.Sprintf("w%d", i), fmt.Sprint(n), time.Second); err == nil {
					mu.Lock()
					now := time.Now()
					longest = max(longest, now.Sub(last))
					last = now
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return max(longest, time.Since(last))
}

func TestMeshWrongPasswordNeverJoins(t *testing.T) {
	tc := startCluster(t, 3, 3, fullMesh, func(i int, c *meshkv.Config) {
		c.MeshPassword = []byte("correct horse battery staple")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ml0, err := tc.nodes[0].Client().MemberList(ctxTimeout(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, err = meshkv.Start(ctx, meshkv.Config{
		Name:               "intruder",
		ClusterName:        tc.name,
		MeshListen:         freeAddr(),
		Peers:              []string{tc.nodes[0].MeshAddr()},
		InitialClusterSize: 1,
		MeshPassword:       []byte("wrong"),
		TickInterval:       testTick,
		ElectionTimeout:    testElection,
	})
	if err == nil {
		t.Fatal("a node with the wrong password joined")
	}
	ml, err := tc.nodes[0].Client().MemberList(ctxTimeout(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != len(ml0.Members) {
		t.Fatalf("members = %d, want %d as before the intruder", len(ml.Members), len(ml0.Members))
	}
}
