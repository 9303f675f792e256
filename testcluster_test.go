package meshkv_test

// testCluster runs n in-process nodes either over real mesh routers on
// loopback, each link through a proxy a test can cut (startCluster: tests
// named Mesh, built without -race), or over the in-memory network
// (startMemCluster: run under -race).

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

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/netproxy"
	"github.com/meshkv/meshkv/meshtransport/meshtransporttest"
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
	// mem is the in-memory network of a startMemCluster cluster (nil: real
	// mesh routers behind proxies).
	mem    *meshtransporttest.Network
	killed map[int]bool
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
	if tc.mem != nil {
		if mode != netproxy.Blackhole {
			tc.t.Fatalf("the in-memory network cuts only as a blackhole, not %v", mode)
		}
		tc.mem.Cut(tc.nodes[i].MemPeer(), tc.nodes[j].MemPeer())
		return
	}
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
	if tc.mem != nil {
		tc.mem.Heal(tc.nodes[i].MemPeer(), tc.nodes[j].MemPeer())
		return
	}
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

// waitFor polls cond until it holds or the timeout passes (the one wait of
// the tests, shared with the in-package ones).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	meshkv.Eventually(t, timeout, what, cond)
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

const testDeadMember = 2 * time.Second

func withDeadMember(i int, c *meshkv.Config) { c.DeadMemberTimeout = testDeadMember }

// add starts one more node that dials every node not yet killed.
func (tc *testCluster) add(t *testing.T) int {
	t.Helper()
	i := len(tc.nodes)
	if tc.mem != nil {
		return tc.addMem(t)
	}
	var peers []string
	for j, nd := range tc.nodes {
		if tc.killed[j] {
			continue
		}
		p, err := netproxy.New("127.0.0.1:0", nd.MeshAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		tc.proxies[[2]int{j, i}] = p
		peers = append(peers, p.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nd, err := meshkv.Start(ctx, meshkv.Config{
		Name:                 fmt.Sprintf("n%d", i),
		ClusterName:          tc.name,
		MeshListen:           "127.0.0.1:0",
		Peers:                peers,
		DisablePeerDiscovery: true,
		TickInterval:         testTick,
		ElectionTimeout:      testElection,
		DeadMemberTimeout:    testDeadMember,
		Logger:               testLogger(t, fmt.Sprintf("n%d", i)),
	})
	if err != nil {
		t.Fatalf("start node %d: %v", i, err)
	}
	t.Cleanup(func() { nd.Close() })
	tc.nodes = append(tc.nodes, nd)
	return i
}

// kill makes node i vanish as a crashed process would: every link to it
// goes silent (on the in-memory network it is isolated). The node keeps
// running until the cleanup: a mesh router cannot be stopped inside a
// process, and both backends kill the same way.
func (tc *testCluster) kill(i int) {
	tc.t.Helper()
	if tc.mem != nil {
		tc.mem.Isolate(tc.nodes[i].MemPeer())
	}
	for link, p := range tc.proxies {
		if link[0] == i || link[1] == i {
			if err := p.Cut(netproxy.Blackhole); err != nil {
				tc.t.Fatal(err)
			}
		}
	}
	if tc.killed == nil {
		tc.killed = map[int]bool{}
	}
	tc.killed[i] = true
}

// live returns a node that has not been killed.
func (tc *testCluster) live() *meshkv.Node {
	for i, nd := range tc.nodes {
		if !tc.killed[i] {
			return nd
		}
	}
	tc.t.Fatal("no live node")
	return nil
}

// voters returns the voter and learner ids as a live member sees them.
func (tc *testCluster) membership() (voters, learners []uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ml, err := tc.live().Client().MemberList(ctx)
	if err != nil {
		return nil, nil
	}
	for _, m := range ml.Members {
		if m.IsLearner {
			learners = append(learners, m.ID)
		} else {
			voters = append(voters, m.ID)
		}
	}
	return voters, learners
}

func (tc *testCluster) liveIDs() []uint64 {
	var ids []uint64
	for i, nd := range tc.nodes {
		if !tc.killed[i] {
			ids = append(ids, nd.ID())
		}
	}
	return ids
}

// waitVoters waits until the cluster has want voters, all of them live.
func (tc *testCluster) waitVoters(want int, timeout time.Duration) {
	tc.t.Helper()
	waitFor(tc.t, timeout, fmt.Sprintf("%d live voters", want), func() bool {
		v, _ := tc.membership()
		if len(v) != want {
			return false
		}
		for _, id := range v {
			if !slices.Contains(tc.liveIDs(), id) {
				return false
			}
		}
		return true
	})
}
func keys(m map[int]bool) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}

// memLeaveTimeout bounds the graceful leave of a closed node, so that the
// cleanup of a cluster with killed nodes does not wait the default.
const memLeaveTimeout = 500 * time.Millisecond

func memAddr(i int) string { return fmt.Sprintf("10.78.0.%d:2380", i+1) }

// memConfig is the configuration of node i of an in-memory cluster.
func (tc *testCluster) memConfig(t *testing.T, i, size int, peers []string) meshkv.Config {
	cfg := meshkv.Config{
		Name:               fmt.Sprintf("n%d", i),
		ClusterName:        tc.name,
		MeshListen:         memAddr(i),
		Peers:              peers,
		MeshPassword:       []byte("secret"),
		InitialClusterSize: size,
		TickInterval:       testTick,
		ElectionTimeout:    testElection,
		LeaveTimeout:       memLeaveTimeout,
		Logger:             testLogger(t, fmt.Sprintf("n%d", i)),
	}
	meshkv.UseMemNetwork(&cfg, tc.mem)
	return cfg
}

// startMemCluster starts n nodes with initial cluster size size, all linked,
// on an in-memory network of their own, in an order and with start spacing
// drawn from seed, and waits until every one serves.
func startMemCluster(t *testing.T, seed uint64, n, size int, mut func(i int, c *meshkv.Config)) *testCluster {
	t.Helper()
	tc := &testCluster{t: t, name: fmt.Sprintf("memtest-%d", seed), nodes: make([]*meshkv.Node, n),
		mem: meshtransporttest.New(seed)}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	rnd := rand.New(rand.NewPCG(seed, seed))
	for _, i := range rnd.Perm(n) {
		time.Sleep(time.Duration(rnd.IntN(100)) * time.Millisecond) // random start order and spacing
		var peers []string
		for j := range n {
			if j != i {
				peers = append(peers, memAddr(j))
			}
		}
		cfg := tc.memConfig(t, i, size, peers)
		if mut != nil {
			mut(i, &cfg)
		}
		wg.Go(func() { tc.nodes[i], errs[i] = meshkv.Start(ctx, cfg) })
	}
	wg.Wait()
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, nd := range tc.nodes {
			if nd != nil {
				wg.Go(func() { nd.Close() })
			}
		}
		wg.Wait()
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("start: %v", err)
	}
	return tc
}

// addMem starts one more node of an in-memory cluster, dialing every node
// not yet killed.
func (tc *testCluster) addMem(t *testing.T) int {
	t.Helper()
	i := len(tc.nodes)
	var peers []string
	for j := range tc.nodes {
		if !tc.killed[j] {
			peers = append(peers, memAddr(j))
		}
	}
	cfg := tc.memConfig(t, i, 0, peers)
	cfg.DeadMemberTimeout = testDeadMember
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nd, err := meshkv.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start node %d: %v", i, err)
	}
	t.Cleanup(func() { nd.Close() })
	tc.nodes = append(tc.nodes, nd)
	return i
}
