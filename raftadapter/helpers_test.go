package raftadapter_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshkv/meshkv/raftadapter"
	"github.com/meshkv/meshkv/raftadapter/raftadaptertest"
)

var (
	_ raftadapter.Transport          = (*raftadaptertest.Endpoint)(nil)
	_ raftadaptertest.Peer           = (*raftadapter.Node)(nil)
	_ raftadapter.StateMachine       = (*raftadaptertest.KV)(nil)
	_ raftadapter.ConfChangeObserver = (*raftadaptertest.KV)(nil)
)

// cluster is a set of nodes over an in-memory network, driven by hand:
// nodes have no ticker, and the test advances time with tickAll after the
// cluster has quiesced.
type cluster struct {
	t     testing.TB
	net   *raftadaptertest.Network
	mod   func(*raftadapter.Config)
	ids   []uint64
	nodes map[uint64]*raftadapter.Node
	kvs   map[uint64]*raftadaptertest.KV
}

// newCluster bootstraps size nodes with ids 1..size. mod may adjust each
// node's config (it is applied after the test defaults).
func newCluster(t testing.TB, size int, netCfg raftadaptertest.NetworkConfig, mod func(*raftadapter.Config)) *cluster {
	t.Helper()
	c := &cluster{
		t:     t,
		net:   raftadaptertest.NewNetwork(netCfg),
		mod:   mod,
		nodes: make(map[uint64]*raftadapter.Node),
		kvs:   make(map[uint64]*raftadaptertest.KV),
	}
	t.Cleanup(c.close)
	var peers []uint64
	for id := uint64(1); id <= uint64(size); id++ {
		peers = append(peers, id)
	}
	for _, id := range peers {
		c.start(id, peers)
	}
	return c
}

// start creates node id; peers is nil for a node joining the cluster.
func (c *cluster) start(id uint64, peers []uint64) *raftadapter.Node {
	c.t.Helper()
	cfg := raftadapter.Config{
		ID:             id,
		Peers:          peers,
		DisableTicker:  true,
		ElectionTicks:  10,
		HeartbeatTicks: 1,
		CloseTimeout:   500 * time.Millisecond,
		Logger:         testLogger(c.t, id),
	}
	if c.mod != nil {
		c.mod(&cfg)
	}
	kv := raftadaptertest.NewKV()
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

func (c *cluster) close() {
	for _, id := range c.ids {
		if err := c.nodes[id].Close(); err != nil {
			c.t.Errorf("Close(%d): %v", id, err)
		}
		c.net.Detach(id) // the others learn it is unreachable
	}
	c.net.Close()
	for _, id := range c.ids {
		if err := c.kvs[id].Err(); err != nil {
			c.t.Errorf("node %d state machine: %v", id, err)
		}
	}
}

// settle waits until no message is in flight and every node is idle.
func (c *cluster) settle() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for stable := 0; stable < 2; {
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster did not quiesce: %+v", c.net.Stats())
		}
		before := c.net.Stats()
		idle := before.InFlight == 0
		for _, id := range c.ids {
			if !c.nodes[id].IdleForTest() {
				idle = false
			}
		}
		after := c.net.Stats()
		if idle && after.InFlight == 0 && after.Sent == before.Sent {
			stable++
			continue
		}
		stable = 0
		time.Sleep(50 * time.Microsecond)
	}
}

// tickAll advances every running node's clock by one tick.
func (c *cluster) tickAll() {
	for _, id := range c.ids {
		_ = c.nodes[id].Tick()
	}
}

// tick advances the clocks of the given nodes by one tick.
func (c *cluster) tick(ids ...uint64) {
	for _, id := range ids {
		_ = c.nodes[id].Tick()
	}
}

// waitFor quiesces the cluster and checks cond, ticking all nodes between
// checks, at most maxTicks times.
func (c *cluster) waitFor(what string, maxTicks int, cond func() bool) {
	c.t.Helper()
	for i := 0; ; i++ {
		c.settle()
		if cond() {
			return
		}
		if i >= maxTicks {
			c.t.Fatalf("%s: not reached after %d ticks", what, maxTicks)
		}
		c.tickAll()
	}
}

// await waits for the result of an async call, quiescing the cluster and
// ticking all nodes between checks, at most maxTicks times. Each check gives
// the caller's goroutine a moment to run before time advances.
func (c *cluster) await(what string, maxTicks int, ch <-chan error) error {
	c.t.Helper()
	for i := 0; ; i++ {
		c.settle()
		select {
		case err := <-ch:
			return err
		case <-time.After(2 * time.Millisecond):
		}
		if i >= maxTicks {
			c.t.Fatalf("%s: no result after %d ticks", what, maxTicks)
		}
		c.tickAll()
	}
}

// leaderAmong returns the leader all of ids agree on, or 0.
func (c *cluster) leaderAmong(ids ...uint64) uint64 {
	var lead uint64
	for _, id := range ids {
		st := c.nodes[id].Status()
		if st.Leader == 0 || (lead != 0 && st.Leader != lead) {
			return 0
		}
		lead = st.Leader
	}
	if !slices.Contains(ids, lead) || !c.nodes[lead].Status().IsLeader {
		return 0
	}
	return lead
}

// waitLeader waits until all of ids (all nodes if none given) agree on a leader.
func (c *cluster) waitLeader(ids ...uint64) uint64 {
	c.t.Helper()
	if len(ids) == 0 {
		ids = c.ids
	}
	var lead uint64
	c.waitFor(fmt.Sprintf("leader among %v", ids), 300, func() bool {
		lead = c.leaderAmong(ids...)
		return lead != 0
	})
	return lead
}

// others returns the ids other than the given ones.
func (c *cluster) others(not ...uint64) []uint64 {
	var out []uint64
	for _, id := range c.ids {
		if !slices.Contains(not, id) {
			out = append(out, id)
		}
	}
	return out
}

// put proposes key=value through node id and fails the test on error.
func (c *cluster) put(id uint64, key, value string) raftadaptertest.PutResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.nodes[id].Propose(ctx, raftadaptertest.Put(key, value))
	if err != nil {
		c.t.Fatalf("Propose(%s=%s) via %d: %v", key, value, id, err)
	}
	pr, ok := res.(raftadaptertest.PutResult)
	if !ok {
		c.t.Fatalf("Propose(%s=%s) via %d: result %T %v, want PutResult", key, value, id, res, res)
	}
	return pr
}

// converged reports whether every given node's KV equals the first one's
// and has applied up to the same index.
func (c *cluster) converged(ids ...uint64) bool {
	want := c.kvs[ids[0]].Data()
	for _, id := range ids[1:] {
		got := c.kvs[id].Data()
		if len(got) != len(want) {
			return false
		}
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
	}
	return true
}

// async runs f in a goroutine and returns a channel with its error.
func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// assertPending fails the test if ch already produced a result.
func assertPending(t testing.TB, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned %v; want it still waiting", what, err)
	default:
	}
}

// result waits briefly for the outcome of an async call that must be done.
func result(t testing.TB, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

// eventually polls cond until it holds or timeout passes (for tests that
// run the real ticker).
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v", what, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB, id uint64) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return nil
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", id)
}
