//go:build !race

// Real mesh routers: mesh itself has data races (see mesh_test.go), so these
// tests and benchmarks are left out of -race runs.

package meshkv_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/netproxy"
	"github.com/meshkv/meshkv/meshtransport"
	"github.com/meshkv/meshkv/raftadapter"
)

// Snapshot tests: a small SnapshotCount, so that 100,000 writes compact the
// log many times over and a member that is behind can only catch up from a
// snapshot.
const (
	snapCount    = 1000
	snapKeys     = 100_000
	snapPerTxn   = 10 // puts per Txn: 10,000 log entries for 100,000 keys
	snapValueLen = 32
	snapWorkers  = 32
)

func withSnapshots(i int, c *meshkv.Config) {
	c.SnapshotCount = snapCount
	// Long enough that a member cut off for a test is never replaced.
	c.DeadMemberTimeout = 5 * time.Minute
}

// snapKey and snapValue make every key's value a function of its number, so
// any key can be checked on any member.
func snapKey(i int) string { return fmt.Sprintf("snap/%08d", i) }

func snapValue(i, n int) string {
	v := strconv.Itoa(i) + "-"
	if len(v) >= n {
		return v
	}
	return v + strings.Repeat("x", n-len(v))
}

// snapLoad writes keys [from, to) in Txns of perTxn puts, from snapWorkers
// goroutines spread over the clients. A Txn that fails is retried (the puts
// are idempotent in content); one that keeps failing fails tb.
func snapLoad(tb testing.TB, clis []*clientv3.Client, from, to, perTxn, valueLen int) {
	tb.Helper()
	var next atomic.Int64
	next.Store(int64(from))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for w := range snapWorkers {
		cli := clis[w%len(clis)]
		wg.Go(func() {
			for {
				lo := int(next.Add(int64(perTxn))) - perTxn
				if lo >= to {
					return
				}
				hi := min(lo+perTxn, to)
				ops := make([]clientv3.Op, 0, hi-lo)
				for i := lo; i < hi; i++ {
					ops = append(ops, clientv3.OpPut(snapKey(i), snapValue(i, valueLen)))
				}
				var err error
				for range 5 {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, err = cli.Txn(ctx).Then(ops...).Commit()
					cancel()
					if err == nil {
						break
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("txn of keys %d..%d: %w", lo, hi-1, err)
					}
					mu.Unlock()
					next.Store(int64(to)) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		tb.Fatal(firstErr)
	}
}

// snapFill writes small puts until the leader's log has been compacted past
// its first entries: a member that joins now cannot be sent the log, only a
// snapshot.
func snapFill(tb testing.TB, nodes []*meshkv.Node) {
	tb.Helper()
	compacted := func() bool {
		for _, nd := range nodes {
			if s := nd.Stats(); s.Leader == nd.ID() {
				return s.SnapshotIndex > raftadapter.DefaultSnapshotCatchUpEntries
			}
		}
		return false
	}
	deadline := time.Now().Add(2 * time.Minute)
	for n := 0; !compacted(); n++ {
		if time.Now().After(deadline) {
			tb.Fatalf("the leader's log was not compacted after %d filler writes: %+v", n*100, nodes[0].Stats())
		}
		var wg sync.WaitGroup
		for w := range 100 {
			wg.Go(func() {
				_ = put(nodes[w%len(nodes)].Client(), "snap-filler", strconv.Itoa(w), 5*time.Second)
			})
		}
		wg.Wait()
	}
}

func clientsOf(nodes []*meshkv.Node) []*clientv3.Client {
	clis := make([]*clientv3.Client, len(nodes))
	for i, nd := range nodes {
		clis[i] = nd.Client()
	}
	return clis
}

// warnLogger sends warnings and errors to tb.Log (benchmarks print every
// line they log, so info lines would drown the results).
func warnLogger(tb testing.TB, name string) *slog.Logger {
	w := &tbWriter{tb: tb}
	tb.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", name)
}

type tbWriter struct {
	tb   testing.TB
	done atomic.Bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.tb.Log(string(p))
	}
	return len(p), nil
}

// joinNode starts a node of an existing cluster that dials only peers (mesh
// peer discovery off, so it stays connected to exactly those).
func joinNode(tb testing.TB, clusterName, name string, peers []string, log *slog.Logger, mut func(*meshkv.Config)) *meshkv.Node {
	tb.Helper()
	cfg := meshkv.Config{
		Name:                 name,
		ClusterName:          clusterName,
		MeshListen:           "127.0.0.1:0",
		Peers:                peers,
		DisablePeerDiscovery: true,
		TickInterval:         testTick,
		ElectionTimeout:      testElection,
		Logger:               log,
	}
	if mut != nil {
		mut(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nd, err := meshkv.Start(ctx, cfg)
	if err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	tb.Cleanup(func() { nd.Close() })
	return nd
}

// startMeshCluster starts n nodes on direct mesh links between every pair,
// with peer discovery off (a node that joins through one peer stays behind
// it). It is startCluster for benchmarks, without proxies.
func startMeshCluster(tb testing.TB, n int, mut func(i int, c *meshkv.Config)) (string, []*meshkv.Node) {
	tb.Helper()
	name := fmt.Sprintf("bench-%x", rand.Uint64())
	addrs := make([]string, n)
	held := make([]net.Listener, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		held[i], addrs[i] = l, l.Addr().String()
	}
	for _, l := range held {
		l.Close()
	}
	nodes := make([]*meshkv.Node, n)
	errs := make([]error, n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			cfg := meshkv.Config{
				Name:                 fmt.Sprintf("n%d", i),
				ClusterName:          name,
				MeshListen:           addrs[i],
				Peers:                addrs[i+1:],
				DisablePeerDiscovery: true,
				InitialClusterSize:   n,
				TickInterval:         testTick,
				ElectionTimeout:      testElection,
				Logger:               warnLogger(tb, fmt.Sprintf("n%d", i)),
			}
			if mut != nil {
				mut(i, &cfg)
			}
			nodes[i], errs[i] = meshkv.Start(ctx, cfg)
		})
	}
	wg.Wait()
	tb.Cleanup(func() {
		for _, nd := range nodes {
			if nd != nil {
				nd.Close()
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		tb.Fatalf("start: %v", err)
	}
	return name, nodes
}

// leaderOf returns the index of the node that leads, waiting for one.
func leaderOf(tb testing.TB, nodes []*meshkv.Node) int {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for i, nd := range nodes {
			if s := nd.Stats(); s.Leader == nd.ID() {
				return i
			}
		}
		if time.Now().After(deadline) {
			tb.Fatal("no leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCaughtUp waits until a linearizable read of key through nd returns
// want and returns how long that took from start.
func waitCaughtUp(tb testing.TB, nd *meshkv.Node, key, want string, start time.Time, timeout time.Duration) time.Duration {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var (
		got string
		err error
	)
	for {
		got, err = getValue(nd.Client(), key, 5*time.Second)
		if err == nil && got == want {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%x not caught up after %v: read %s = %.20q, %v; want %.20q; stats %+v",
				nd.ID(), timeout, key, got, err, want, nd.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkReads reads the last key and samples random earlier ones through nd,
// linearizably, and checks their values.
func checkReads(tb testing.TB, nd *meshkv.Node, keys, valueLen int) {
	tb.Helper()
	idx := []int{keys - 1, 0}
	for range 100 {
		idx = append(idx, rand.IntN(keys))
	}
	for _, i := range idx {
		got, err := getValue(nd.Client(), snapKey(i), 5*time.Second)
		if want := snapValue(i, valueLen); err != nil || got != want {
			tb.Fatalf("linearizable read of %s via %x = %q, %v; want %q", snapKey(i), nd.ID(), got, err, want)
		}
	}
}

// checkSameHash checks that every node has the same KV hash and compact
// revision at the leader's current revision, once each has applied it.
func checkSameHash(tb testing.TB, nodes []*meshkv.Node) {
	tb.Helper()
	rev := nodes[leaderOf(tb, nodes)].Stats().Revision
	type hk struct {
		hash    uint32
		compact int64
	}
	var first hk
	for i, nd := range nodes {
		deadline := time.Now().Add(20 * time.Second)
		for nd.Stats().Revision < rev {
			if time.Now().After(deadline) {
				tb.Fatalf("node %d stays at revision %d, want %d", i, nd.Stats().Revision, rev)
			}
			time.Sleep(10 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := nd.Client().HashKV(ctx, "inproc", rev)
		cancel()
		if err != nil {
			tb.Fatalf("HashKV(%d) on node %d: %v", rev, i, err)
		}
		got := hk{resp.Hash, resp.CompactRevision}
		if i == 0 {
			first = got
		} else if got != first {
			tb.Fatalf("HashKV at revision %d: node %d has %+v, node 0 has %+v", rev, i, got, first)
		}
	}
}

// minChunks is the fewest chunks a snapshot of keys keys can cross the mesh
// in: their keys and values alone fill that many.
func minChunks(keys, valueLen int) uint64 {
	raw := keys * (len(snapKey(0)) + valueLen)
	return uint64(raw / meshtransport.ChunkSize)
}

// snapshotsSent sums the acknowledged snapshot transfers of nodes.
func snapshotsSent(nodes []*meshkv.Node) (n uint64) {
	for _, nd := range nodes {
		n += nd.Stats().Mesh.SnapshotsSent
	}
	return n
}

// meshTotals sums the mesh counters of nodes.
func meshTotals(nodes []*meshkv.Node) meshkv.MeshStats {
	var t meshkv.MeshStats
	for _, nd := range nodes {
		m := nd.Stats().Mesh
		t.ChunksSent += m.ChunksSent
		t.ChunksReceived += m.ChunksReceived
		t.SnapshotsSent += m.SnapshotsSent
		t.TransfersFailed += m.TransfersFailed
		t.TransfersAbandoned += m.TransfersAbandoned
		t.Detoured += m.Detoured
		t.DetouredChunks += m.DetouredChunks
		t.Relayed += m.Relayed
		t.RelayDropped += m.RelayDropped
	}
	return t
}

// checkRestoredBySnapshot checks that nd caught up from at least one
// snapshot that crossed the mesh in chunks, sent by one of others.
func checkRestoredBySnapshot(tb testing.TB, nd *meshkv.Node, others []*meshkv.Node, sentBefore uint64, keys, valueLen int) {
	tb.Helper()
	s := nd.Stats()
	if s.SnapshotsRestored < 1 {
		tb.Fatalf("the member caught up without a snapshot: %+v", s)
	}
	if want := minChunks(keys, valueLen); s.Mesh.ChunksReceived < want {
		tb.Fatalf("the member received %d chunks, want at least %d for %d keys", s.Mesh.ChunksReceived, want, keys)
	}
	if got := snapshotsSent(others); got <= sentBefore {
		tb.Fatalf("no snapshot transfer was acknowledged (%d before, %d after)", sentBefore, got)
	}
}

// TestSnapshotNewMemberCatchesUp: a member started after 100,000 writes, with
// the log compacted, catches up from a snapshot sent over the mesh in chunks
// and serves linearizable reads; every member has the same KV hash.
func TestSnapshotNewMemberCatchesUp(t *testing.T) {
	tc := startCluster(t, 3, 3, fullMesh, withSnapshots)
	loadStart := time.Now()
	snapLoad(t, clientsOf(tc.nodes), 0, snapKeys, snapPerTxn, snapValueLen)
	t.Logf("%d keys written in %v", snapKeys, time.Since(loadStart))
	snapFill(t, tc.nodes)
	sentBefore := snapshotsSent(tc.nodes)

	start := time.Now()
	nd := joinNode(t, tc.name, "n3", []string{tc.nodes[0].MeshAddr(), tc.nodes[1].MeshAddr(), tc.nodes[2].MeshAddr()},
		testLogger(t, "n3"), func(c *meshkv.Config) { c.SnapshotCount = snapCount })
	took := waitCaughtUp(t, nd, snapKey(snapKeys-1), snapValue(snapKeys-1, snapValueLen), start, 60*time.Second)
	s := nd.Stats()
	t.Logf("new member caught up in %v: %d chunks, store %d bytes, snapshot index %d",
		took, s.Mesh.ChunksReceived, s.StoreBytes, s.SnapshotIndex)
	checkRestoredBySnapshot(t, nd, tc.nodes, sentBefore, snapKeys, snapValueLen)
	checkReads(t, nd, snapKeys, snapValueLen)
	checkSameHash(t, append(tc.nodes, nd))
}

// TestSnapshotRelayedMemberCatchesUp: the same for a member whose only mesh
// link is to a follower, so the leader's snapshot chunks are relayed.
func TestSnapshotRelayedMemberCatchesUp(t *testing.T) {
	tc := startCluster(t, 3, 3, fullMesh, withSnapshots)
	snapLoad(t, clientsOf(tc.nodes), 0, snapKeys, snapPerTxn, snapValueLen)
	snapFill(t, tc.nodes)
	l := tc.leader()
	via := (l + 1) % 3
	sentBefore := snapshotsSent(tc.nodes)

	start := time.Now()
	nd := joinNode(t, tc.name, "n3", []string{tc.nodes[via].MeshAddr()},
		testLogger(t, "n3"), func(c *meshkv.Config) { c.SnapshotCount = snapCount })
	took := waitCaughtUp(t, nd, snapKey(snapKeys-1), snapValue(snapKeys-1, snapValueLen), start, 60*time.Second)
	s := nd.Stats()
	t.Logf("member behind n%d (leader n%d) caught up in %v: %d chunks, store %d bytes",
		via, l, took, s.Mesh.ChunksReceived, s.StoreBytes)
	if nl := tc.leader(); nl == via {
		t.Logf("leadership moved to n%d, the relay, during the catch-up", nl)
	}
	checkRestoredBySnapshot(t, nd, tc.nodes, sentBefore, snapKeys, snapValueLen)
	checkReads(t, nd, snapKeys, snapValueLen)
	checkSameHash(t, append(tc.nodes, nd))
}

// TestSnapshotCutFollowerCatchesUp: a follower whose links go silent while
// the others write more than SnapshotCount entries past its log, then heal,
// catches up from a snapshot.
func TestSnapshotCutFollowerCatchesUp(t *testing.T) {
	tc := startCluster(t, 3, 3, fullMesh, withSnapshots)
	const before = 10_000
	snapLoad(t, clientsOf(tc.nodes), 0, before, snapPerTxn, snapValueLen)
	l := tc.leader()
	f := (l + 1) % 3
	others := []*meshkv.Node{tc.nodes[l], tc.nodes[(l+2)%3]}
	waitFor(t, 10*time.Second, "the follower to apply the first writes", func() bool {
		return tc.nodes[f].Stats().AppliedIndex >= tc.nodes[l].Stats().CommitIndex
	})
	fBefore := tc.nodes[f].Stats()
	sentBefore := snapshotsSent(others)

	for j := range 3 {
		if j != f {
			tc.cut(f, j, netproxy.Blackhole)
		}
	}
	// Write until the leader's log no longer holds what the follower lacks.
	clis := clientsOf(others)
	written := before
	for {
		s := tc.nodes[tc.leader(f)].Stats()
		if s.SnapshotIndex > fBefore.AppliedIndex+raftadapter.DefaultSnapshotCatchUpEntries+snapCount {
			break
		}
		snapLoad(t, clis, written, written+10_000, 2, snapValueLen)
		written += 10_000
	}
	if s := tc.nodes[f].Stats(); s.AppliedIndex != fBefore.AppliedIndex {
		t.Fatalf("the cut follower applied entries: %d, was %d", s.AppliedIndex, fBefore.AppliedIndex)
	}
	for j := range 3 {
		if j != f {
			tc.heal(f, j)
		}
	}
	start := time.Now()
	took := waitCaughtUp(t, tc.nodes[f], snapKey(written-1), snapValue(written-1, snapValueLen), start, 60*time.Second)
	s := tc.nodes[f].Stats()
	t.Logf("follower caught up %v after the heal (%d keys written while cut): restored %d snapshots, %d chunks",
		took, written-before, s.SnapshotsRestored-fBefore.SnapshotsRestored, s.Mesh.ChunksReceived-fBefore.Mesh.ChunksReceived)
	if s.SnapshotsRestored <= fBefore.SnapshotsRestored {
		t.Fatalf("the follower caught up without a snapshot: before %+v, after %+v", fBefore, s)
	}
	if s.Mesh.ChunksReceived-fBefore.Mesh.ChunksReceived < minChunks(written, snapValueLen) {
		t.Fatalf("the follower received %d chunks, want at least %d", s.Mesh.ChunksReceived-fBefore.Mesh.ChunksReceived, minChunks(written, snapValueLen))
	}
	if got := snapshotsSent(others); got <= sentBefore {
		t.Fatalf("no snapshot transfer was acknowledged (%d before, %d after)", sentBefore, got)
	}
	checkReads(t, tc.nodes[f], written, snapValueLen)
	checkSameHash(t, tc.nodes)
}

// envInt reads a positive integer from the environment, or returns def.
func envInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// timeline records when nodes log the messages a benchmark wants to time,
// and passes warnings and errors on to tb.Log.
type timeline struct {
	mu     sync.Mutex
	events []logEvent
}

type logEvent struct {
	at    time.Time
	node  string
	msg   string
	bytes int64
}

// logger returns a logger for node name that records into tl.
func (tl *timeline) logger(tb testing.TB, name string) *slog.Logger {
	return slog.New(timelineHandler{tl: tl, node: name, next: warnLogger(tb, name).Handler()})
}

// since returns the events logged at or after t, in order.
func (tl *timeline) since(t time.Time) []logEvent {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var out []logEvent
	for _, e := range tl.events {
		if !e.at.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

type timelineHandler struct {
	tl   *timeline
	node string
	next slog.Handler
}

// timedMessages are the log messages a timeline records.
var timedMessages = map[string]bool{"snapshot stored": true, "restored snapshot from leader": true, "added learner": true}

func (h timelineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h timelineHandler) Handle(ctx context.Context, r slog.Record) error {
	if timedMessages[r.Message] {
		e := logEvent{at: r.Time, node: h.node, msg: r.Message}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "bytes" {
				e.bytes = a.Value.Int64()
			}
			return true
		})
		h.tl.mu.Lock()
		h.tl.events = append(h.tl.events, e)
		h.tl.mu.Unlock()
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h timelineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return timelineHandler{tl: h.tl, node: h.node, next: h.next.WithAttrs(as)}
}

func (h timelineHandler) WithGroup(g string) slog.Handler {
	return timelineHandler{tl: h.tl, node: h.node, next: h.next.WithGroup(g)}
}

// BenchmarkSnapshotTransfer measures how fast a new member catches up from a
// snapshot of a large state: the time from its Start to its first
// linearizable read of the last key written, for a member linked to every
// node (direct) and for one linked only to a follower (relayed, so mesh
// forwards every chunk). MESHKV_SNAPSHOT_MB sets the size of the state
// (default 100), written as 256-byte values into a 3-node cluster with the
// default SnapshotCount. Metrics: MB/s of state, and the phases of the
// catch-up from the nodes' logs (the leader's fresh snapshot that includes
// the new member, the transfer and restore, the read).
//
//	go test -run '^$' -bench SnapshotTransfer -benchtime=1x .
func BenchmarkSnapshotTransfer(b *testing.B) {
	const valueLen = 256
	mb := envInt(b, "MESHKV_SNAPSHOT_MB", 100)
	keys := mb << 20 / valueLen
	tl := &timeline{}
	name, nodes := startMeshCluster(b, 3, func(i int, c *meshkv.Config) {
		c.Logger = tl.logger(b, c.Name)
	})
	start := time.Now()
	snapLoad(b, clientsOf(nodes), 0, keys, 32, valueLen)
	snapFill(b, nodes)
	stateBytes := keys * (len(snapKey(0)) + valueLen)
	b.Logf("loaded %d keys (%d MB of keys and values, store %d MB) in %v",
		keys, stateBytes>>20, nodes[0].Stats().StoreBytes>>20, time.Since(start))
	joined := 0
	for _, mode := range []string{"direct", "relayed"} {
		b.Run(mode, func(b *testing.B) {
			var total time.Duration
			var chunks uint64
			for range b.N {
				l := leaderOf(b, nodes)
				peers := []string{nodes[(l+1)%3].MeshAddr()}
				if mode == "direct" {
					peers = []string{nodes[0].MeshAddr(), nodes[1].MeshAddr(), nodes[2].MeshAddr()}
				}
				nodeName := fmt.Sprintf("new%d", joined)
				joined++
				before := meshTotals(nodes)
				start := time.Now()
				nd := joinNode(b, name, nodeName, peers, tl.logger(b, nodeName), nil)
				started := time.Since(start)
				took := waitCaughtUp(b, nd, snapKey(keys-1), snapValue(keys-1, valueLen), start, 10*time.Minute)
				s := nd.Stats()
				if s.SnapshotsRestored < 1 {
					b.Fatalf("the new member caught up without a snapshot: %+v", s)
				}
				total += took
				chunks += s.Mesh.ChunksReceived
				b.Logf("%s: caught up in %v (Start returned after %v): %d chunks (%.0f MB on the wire), %.1f MB/s of state",
					mode, took, started, s.Mesh.ChunksReceived, float64(s.Mesh.ChunksReceived*meshtransport.ChunkSize)/(1<<20),
					float64(stateBytes)/(1<<20)/took.Seconds())
				after := meshTotals(nodes)
				b.Logf("  cluster: %d snapshots acknowledged, %d transfers failed, %d chunks sent, %d of them detoured at meshkv's layer (relays forwarded %d frames, dropped %d)",
					after.SnapshotsSent-before.SnapshotsSent, after.TransfersFailed-before.TransfersFailed,
					after.ChunksSent-before.ChunksSent, after.DetouredChunks-before.DetouredChunks,
					after.Relayed-before.Relayed, after.RelayDropped-before.RelayDropped)
				for _, e := range tl.since(start) {
					b.Logf("  +%-8v %-5s %s (%d bytes)", e.at.Sub(start).Round(time.Millisecond), e.node, e.msg, e.bytes)
				}
				checkReads(b, nd, keys, valueLen)
			}
			b.ReportMetric(float64(stateBytes)/(1<<20)/(total.Seconds()/float64(b.N)), "MB/s")
			b.ReportMetric(total.Seconds()/float64(b.N), "s/catchup")
			b.ReportMetric(float64(chunks)/float64(b.N), "chunks/op")
		})
	}
}

// TestSnapshotReproNoDetour reproduces a meshtransport bug. While a link's
// sender writes the chunks of a large snapshot, the probes and probe replies
// for that peer wait behind them, so both ends declare the link dead after
// ProbeFailures probe intervals. With no third peer to detour through (the
// first node to join a one-node cluster, the usual way to scale out), the
// receiver's acknowledgement is dropped for want of a route: the leader
// reports the transfer failed and raft sends the whole snapshot again,
// although the receiver had restored it. Fixed, the snapshot crosses once
// and is acknowledged. Run with MESHKV_REPRO=1 (MESHKV_SNAPSHOT_MB sets the
// state, default 100).
func TestSnapshotReproNoDetour(t *testing.T) {
	if os.Getenv("MESHKV_REPRO") == "" {
		t.Skip("reproduces an open meshtransport bug; set MESHKV_REPRO=1")
	}
	const valueLen = 256
	keys := envInt(t, "MESHKV_SNAPSHOT_MB", 100) << 20 / valueLen
	name, nodes := startMeshCluster(t, 1, nil)
	snapLoad(t, clientsOf(nodes), 0, keys, 32, valueLen)
	snapFill(t, nodes)
	start := time.Now()
	nd := joinNode(t, name, "new", []string{nodes[0].MeshAddr()}, warnLogger(t, "new"), nil)
	took := waitCaughtUp(t, nd, snapKey(keys-1), snapValue(keys-1, valueLen), start, 2*time.Minute)
	// Wait for the outcome of the transfers in flight.
	waitFor(t, meshtransport.DefaultSnapshotTimeout+5*time.Second, "the snapshot transfers to end", func() bool {
		m := nodes[0].Stats().Mesh
		return m.SnapshotsSent+m.TransfersFailed > 0 && m.ChunksSent == nd.Stats().Mesh.ChunksReceived
	})
	m, recv := nodes[0].Stats().Mesh, nd.Stats()
	t.Logf("caught up in %v; leader: %d chunks sent, %d snapshots acknowledged, %d transfers failed; new member: %d chunks received, %d snapshots restored",
		took, m.ChunksSent, m.SnapshotsSent, m.TransfersFailed, recv.Mesh.ChunksReceived, recv.SnapshotsRestored)
	if m.TransfersFailed > 0 || m.SnapshotsSent != 1 || recv.SnapshotsRestored != 1 {
		t.Fatalf("the snapshot did not cross once and get acknowledged: %d acknowledged, %d failed, %d restored, %d chunks",
			m.SnapshotsSent, m.TransfersFailed, recv.SnapshotsRestored, m.ChunksSent)
	}
}
