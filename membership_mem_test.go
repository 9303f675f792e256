package meshkv

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshkv/meshkv/meshtransport/meshtransporttest"
)

// These tests run whole clusters of in-process nodes over the transport's
// in-memory network (meshtransporttest), under -race. A kill is a node cut
// from everyone, then closed: what a kill -9 looks like from the others.

const (
	memTick        = 20 * time.Millisecond
	memElection    = 200 * time.Millisecond
	memDeadMember  = 1500 * time.Millisecond
	memEntryTTL    = 3 * time.Second
	memRefresh     = 500 * time.Millisecond
	memRelease     = 2 * time.Second
	memLeave       = 500 * time.Millisecond
	memWaitDefault = 30 * time.Second
)

type memCluster struct {
	t    *testing.T
	net  *meshtransporttest.Network
	name string
	next int

	mu    sync.Mutex
	nodes map[int]*Node
	dead  map[int]bool
	// evenSeen records an even voter count seen in any node's applied
	// configuration outside a joint change.
	evenSeen atomic.Value
}

func newMemCluster(t *testing.T, seed uint64) *memCluster {
	t.Helper()
	mc := &memCluster{t: t, net: meshtransporttest.New(seed), name: fmt.Sprintf("mem-%d", seed),
		nodes: map[int]*Node{}, dead: map[int]bool{}}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		mc.mu.Lock()
		for _, n := range mc.nodes {
			wg.Go(func() { n.Close() })
		}
		mc.mu.Unlock()
		wg.Wait()
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { mc.watchVoterCounts(stop) })
	t.Cleanup(func() { close(stop); wg.Wait() })
	return mc
}

func memAddr(i int) string { return fmt.Sprintf("10.77.0.%d:2380", i+1) }

// config is the configuration of node i listing the nodes peers.
func (mc *memCluster) config(i int, size int, peers []int) Config {
	cfg := Config{
		Name:               fmt.Sprintf("n%d", i),
		ClusterName:        mc.name,
		MeshListen:         memAddr(i),
		MeshPassword:       []byte("secret"),
		InitialClusterSize: size,
		TickInterval:       memTick,
		ElectionTimeout:    memElection,
		DeadMemberTimeout:  memDeadMember,
		LeaveTimeout:       memLeave,
		Logger:             memLogger(mc.t, fmt.Sprintf("n%d", i)),
		test:               &testHooks{fabric: mc.net.Fabric(), entryTTL: memEntryTTL, refresh: memRefresh, promiseRelease: memRelease},
	}
	for _, p := range peers {
		cfg.Peers = append(cfg.Peers, memAddr(p))
	}
	return cfg
}

// start starts node slot i (a fresh process) and waits until it serves.
func (mc *memCluster) start(i int, size int, peers ...int) *Node {
	mc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), memWaitDefault)
	defer cancel()
	n, err := Start(ctx, mc.config(i, size, peers))
	if err != nil {
		mc.t.Fatalf("start node %d: %v", i, err)
	}
	mc.mu.Lock()
	mc.nodes[i] = n
	delete(mc.dead, i)
	mc.mu.Unlock()
	return n
}

// kill cuts node i from everyone, then closes it.
func (mc *memCluster) kill(i int) {
	mc.mu.Lock()
	n := mc.nodes[i]
	mc.dead[i] = true
	delete(mc.nodes, i)
	mc.mu.Unlock()
	mc.net.Isolate(n.mesh)
	n.Close()
}

func (mc *memCluster) live() []*Node {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	var out []*Node
	for _, n := range mc.nodes {
		out = append(out, n)
	}
	return out
}

// waitFor polls cond until it holds (see eventually).
func (mc *memCluster) waitFor(what string, timeout time.Duration, cond func() bool) {
	mc.t.Helper()
	eventually(mc.t, timeout, what, cond)
}

// eventually is the one wait of these tests: it polls cond until it holds,
// and fails the test once timeout passed.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached after %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// always polls cond for d and fails the test as soon as it does not hold.
func always(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if !cond() {
			t.Fatalf("%s: broken", what)
		}
	}
}

// voters returns the voters and learners every live node agrees on, with a
// leader among them (ok false if they do not agree yet).
func (mc *memCluster) agreed() (voters, learners []uint64, ok bool) {
	var lead uint64
	for i, n := range mc.live() {
		rn := n.raft.Load()
		if rn == nil {
			return nil, nil, false
		}
		st := rn.Status()
		if st.Leader == 0 || st.ConfChangePending || len(st.VotersOutgoing) > 0 {
			return nil, nil, false
		}
		if i == 0 {
			voters, learners, lead = st.Voters, st.Learners, st.Leader
		} else if !slices.Equal(voters, st.Voters) || !slices.Equal(learners, st.Learners) || lead != st.Leader {
			return nil, nil, false
		}
	}
	return voters, learners, true
}

// waitVoters waits until the live nodes agree on exactly the given live
// nodes as voters.
func (mc *memCluster) waitVoters(timeout time.Duration, want ...*Node) {
	mc.t.Helper()
	var ids []uint64
	for _, n := range want {
		ids = append(ids, n.id)
	}
	slices.Sort(ids)
	mc.waitFor(fmt.Sprintf("voters %x", ids), timeout, func() bool {
		voters, _, ok := mc.agreed()
		return ok && slices.Equal(voters, ids)
	})
}

// watchVoterCounts records any even voter count a node applied.
func (mc *memCluster) watchVoterCounts(stop <-chan struct{}) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for _, n := range mc.live() {
			rn := n.raft.Load()
			if rn == nil {
				continue
			}
			if st := rn.Status(); len(st.VotersOutgoing) == 0 && len(st.Voters)%2 == 0 && len(st.Voters) > 0 {
				mc.evenSeen.CompareAndSwap(nil, fmt.Sprintf("node %x applied %d voters %x", n.id, len(st.Voters), st.Voters))
			}
		}
	}
}

func (mc *memCluster) checkNoEven() {
	mc.t.Helper()
	if v := mc.evenSeen.Load(); v != nil {
		mc.t.Fatalf("an even voter count was applied: %s", v)
	}
}

// put writes through node n.
func (mc *memCluster) put(n *Node, key string) {
	mc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.Client().Put(ctx, key, "v"); err != nil {
		mc.t.Fatalf("put %s via %x: %v", key, n.id, err)
	}
}

func memLogger(t *testing.T, name string) *slog.Logger {
	w := &memLogWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", name)
}

type memLogWriter struct {
	t    *testing.T
	done atomic.Bool
}

func (w *memLogWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(string(p))
	}
	return len(p), nil
}

// 1 → 3 growth with a kill at each step of it: the cluster never applies an
// even voter count, and replaces what it lost once new nodes arrive.
func TestGrowthSurvivesKillAtEachStep(t *testing.T) {
	for _, stage := range []string{"first learner", "second learner", "after growth"} {
		t.Run(stage, func(t *testing.T) {
			mc := newMemCluster(t, 1)
			a := mc.start(0, 1)
			b := mc.start(1, 1, 0)
			var survivors []*Node
			switch stage {
			case "first learner":
				mc.kill(1)
				c := mc.start(2, 1, 0)
				d := mc.start(3, 1, 0)
				survivors = []*Node{a, c, d}
			case "second learner":
				mc.start(2, 1, 0)
				mc.kill(2)
				d := mc.start(3, 1, 0)
				survivors = []*Node{a, b, d}
			case "after growth":
				c := mc.start(2, 1, 0)
				mc.waitVoters(memWaitDefault, a, b, c)
				mc.kill(1)
				mc.put(a, "one dead")
				d := mc.start(3, 1, 0)
				survivors = []*Node{a, c, d}
			}
			mc.waitVoters(memWaitDefault, survivors...)
			mc.put(survivors[2], "after")
			mc.checkNoEven()
		})
	}
}

// A joiner that dies is removed, and its gossip, live for a while after its
// death, never gets it added again.
func TestDeadJoinerNotReadded(t *testing.T) {
	mc := newMemCluster(t, 2)
	a := mc.start(0, 1)
	j := mc.start(1, 1, 0)
	jid := j.id
	mc.kill(1)
	mc.waitFor("dead joiner removed", memWaitDefault, func() bool {
		_, learners, ok := mc.agreed()
		return ok && !slices.Contains(learners, jid) && a.raft.Load().WasRemoved(jid)
	})
	always(t, memEntryTTL+time.Second, "dead joiner stays out", func() bool {
		st := a.raft.Load().Status()
		return !slices.Contains(st.Learners, jid) && !slices.Contains(st.Voters, jid)
	})
}

// Every member is replaced in turn by a graceful restart (Close, then a new
// process); the cluster keeps three voters and keeps serving.
func TestRollingRestart(t *testing.T) {
	mc := newMemCluster(t, 3)
	nodes := []*Node{mc.start(0, 1)}
	nodes = append(nodes, mc.start(1, 1, 0), mc.start(2, 1, 0))
	mc.waitVoters(memWaitDefault, nodes...)
	slot := 3
	for i := range 3 {
		old := nodes[i]
		mc.mu.Lock()
		for k, n := range mc.nodes {
			if n == old {
				delete(mc.nodes, k)
			}
		}
		mc.mu.Unlock()
		if err := old.Close(); err != nil {
			t.Fatalf("close %x: %v", old.id, err)
		}
		var peers []int
		mc.mu.Lock()
		for k := range mc.nodes {
			peers = append(peers, k)
		}
		mc.mu.Unlock()
		nodes[i] = mc.start(slot, 1, peers...)
		slot++
		mc.waitVoters(memWaitDefault, nodes...)
		mc.put(nodes[i], fmt.Sprintf("after restart %d", i))
	}
	mc.checkNoEven()
}
