//go:build !race

// These tests run real mesh routers on loopback. Mesh itself has data races
// (inside github.com/weaveworks/mesh: connection.established and
// Peer.NickName), so they are left out of -race runs; `make test-mesh` runs
// them without the race detector. Everything that can run over an in-memory
// transport is tested with -race in raftadapter and meshtransport.

package meshkv_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/netproxy"
)

// Fast raft timing for tests.
const (
	testTick     = 50 * time.Millisecond
	testElection = 500 * time.Millisecond
)

// testCluster is n in-process nodes whose mesh links each pass through a
// proxy, so a test can cut any link.
type testCluster struct {
	t       *testing.T
	name    string // cluster name
	nodes   []*meshkv.Node
	proxies map[[2]int]*netproxy.Proxy // link i<j: i dials j through it
	killed  map[int]bool
}

// link describes which pairs are connected; nil means all pairs.
type topology func(i, j int) bool

func fullMesh(i, j int) bool { return true }

// line connects only neighbours: 0–1–2–...
func line(i, j int) bool { return j == i+1 }

// startCluster starts n nodes with initial cluster size size, linked as top
// says, in random order with small random delays.
func startCluster(t *testing.T, n, size int, top topology, mut func(i int, c *meshkv.Config)) *testCluster {
	t.Helper()
	// A cluster name of its own keeps this cluster apart from the mesh
	// routers of earlier tests, which outlive their nodes in this process.
	name := fmt.Sprintf("test-%x", rand.Uint64())
	tc := &testCluster{t: t, name: name, nodes: make([]*meshkv.Node, n), proxies: map[[2]int]*netproxy.Proxy{}}
	// Hold the mesh ports while the proxies take theirs, so that no proxy
	// lands on a node's port.
	addrs := make([]string, n)
	held := make([]net.Listener, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held[i], addrs[i] = l, l.Addr().String()
	}
	peers := make([][]string, n)
	for i := range n {
		for j := i + 1; j < n; j++ {
			if !top(i, j) {
				continue
			}
			p, err := netproxy.New("127.0.0.1:0", addrs[j])
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			tc.proxies[[2]int{i, j}] = p
			peers[i] = append(peers[i], p.Addr())
		}
	}
	for _, l := range held {
		l.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for _, i := range rand.Perm(n) {
		time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond) // random start order and spacing
		wg.Go(func() {
			cfg := meshkv.Config{
				Name:                 fmt.Sprintf("n%d", i),
				ClusterName:          name,
				MeshListen:           addrs[i],
				Peers:                peers[i],
				DisablePeerDiscovery: true,
				InitialClusterSize:   size,
				TickInterval:         testTick,
				ElectionTimeout:      testElection,
				Logger:               testLogger(t, fmt.Sprintf("n%d", i)),
			}
			if mut != nil {
				mut(i, &cfg)
			}
			tc.nodes[i], errs[i] = meshkv.Start(ctx, cfg)
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, nd := range tc.nodes {
			if nd != nil {
				nd.Close()
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("start: %v", err)
	}
	return tc
}

// cut cuts the link between i and j.
func (tc *testCluster) cut(i, j int, mode netproxy.Mode) {
	tc.t.Helper()
	p := tc.proxies[[2]int{min(i, j), max(i, j)}]
	if p == nil {
		tc.t.Fatalf("no link %d–%d", i, j)
	}
	if err := p.Cut(mode); err != nil {
		tc.t.Fatal(err)
	}
}

func (tc *testCluster) heal(i, j int) {
	tc.t.Helper()
	if err := tc.proxies[[2]int{min(i, j), max(i, j)}].Heal(); err != nil {
		tc.t.Fatal(err)
	}
}

// leader returns the index of the node that leads, waiting for one.
func (tc *testCluster) leader(except ...int) int {
	tc.t.Helper()
	var idx int
	waitFor(tc.t, 20*time.Second, "a leader", func() bool {
		for i, nd := range tc.nodes {
			if slices.Contains(except, i) {
				continue
			}
			st, err := nd.Client().Status(ctxTimeout(tc.t, time.Second), "x")
			if err == nil && st.Leader == nd.ID() {
				idx = i
				return true
			}
		}
		return false
	})
	return idx
}

// ctxTimeout returns a context that ends after d or with the test.
func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func put(cli *clientv3.Client, key, val string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := cli.Put(ctx, key, val)
	return err
}

func getValue(cli *clientv3.Client, key string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

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

// An isolated leader steps down; the majority elects a new one; requests
// pending on the old leader fail instead of succeeding stale.
func TestMeshLeaderIsolation(t *testing.T) {
	tc := startCluster(t, 3, 3, fullMesh, nil)
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
func TestMeshBootstrapExactlyOneCluster(t *testing.T) {
	reps := 20
	if testing.Short() {
		reps = 3
	}
	for r := range reps {
		t.Run(fmt.Sprint(r), func(t *testing.T) {
			tc := startCluster(t, 5, 3, fullMesh, nil)
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
