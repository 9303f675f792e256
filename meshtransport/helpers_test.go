package meshtransport_test

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/meshtransport"
	"github.com/meshkv/meshkv/meshtransport/meshtransporttest"
)

// testLogger sends Info and above (Debug with -v and MESHKV_TEST_DEBUG) to
// t.Log until the test ends.
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

// recorder is a Handler that keeps what it is given.
type recorder struct {
	mu          sync.Mutex
	msgs        []*raftpb.Message
	at          []time.Time
	unreachable map[uint64]int
	snaps       []raft.SnapshotStatus
}

func newRecorder() *recorder { return &recorder{unreachable: map[uint64]int{}} }

func (r *recorder) Step(m *raftpb.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.at = append(r.at, time.Now())
	r.mu.Unlock()
}

func (r *recorder) ReportUnreachable(id uint64) {
	r.mu.Lock()
	r.unreachable[id]++
	r.mu.Unlock()
}

func (r *recorder) ReportSnapshot(_ uint64, st raft.SnapshotStatus) {
	r.mu.Lock()
	r.snaps = append(r.snaps, st)
	r.mu.Unlock()
}

// count returns how many messages from a raft id arrived.
func (r *recorder) count(from uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m.GetFrom() == from {
			n++
		}
	}
	return n
}

// indexes returns the Index of every message from a raft id, in order.
func (r *recorder) indexes(from uint64) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []uint64
	for _, m := range r.msgs {
		if m.GetFrom() == from {
			out = append(out, m.GetIndex())
		}
	}
	return out
}

func (r *recorder) snapshots() []raft.SnapshotStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]raft.SnapshotStatus(nil), r.snaps...)
}

// memNode is a transport on an in-memory network.
type memNode struct {
	tr  *meshtransport.Transport
	rec *recorder
}

func (n *memNode) id() uint64 { return uint64(n.tr.RaftID()) }

// PeerName lets a memNode name itself to the network's fault methods.
func (n *memNode) PeerName() meshtransport.PeerName { return n.tr.PeerName() }

// memCluster starts n transports, every one configured with every other's
// address, on a fresh in-memory network. Call it inside a synctest bubble.
func memCluster(t *testing.T, n int, tweak func(i int, c *meshtransport.Config)) (*meshtransporttest.Network, []*memNode) {
	t.Helper()
	net := meshtransporttest.New(1)
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("n%d:7000", i)
	}
	nodes := make([]*memNode, n)
	for i := range nodes {
		var peers []string
		for j, a := range addrs {
			if j != i {
				peers = append(peers, a)
			}
		}
		cfg := meshtransport.Config{
			ListenAddr:  addrs[i],
			Peers:       peers,
			NickName:    fmt.Sprintf("n%d", i),
			ClusterName: "test",
			Fabric:      net.Fabric(),
			Logger:      testLogger(t),
		}
		if tweak != nil {
			tweak(i, &cfg)
		}
		tr, err := meshtransport.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		tr.SetHandler(rec)
		if err := tr.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		nodes[i] = &memNode{tr: tr, rec: rec}
	}
	return net, nodes
}

// msg builds a small raft message.
func msg(from, to, index uint64) *raftpb.Message {
	return &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: new(from), To: new(to), Term: new(uint64(1)), Index: new(index)}
}

// waitUntil advances (fake) time until cond holds or limit passes.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not after %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// pathOf returns how from sees to.
func pathOf(from, to *memNode) meshtransport.Path {
	for _, p := range from.tr.Peers() {
		if p.ID == to.tr.RaftID() {
			return p.Path
		}
	}
	return meshtransport.PathDead
}

// knows reports whether every node sees every other one with a live path.
func allLive(nodes []*memNode) bool {
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b && pathOf(a, b) == meshtransport.PathDead {
				return false
			}
		}
	}
	return true
}

func allDirect(nodes []*memNode) bool {
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b && pathOf(a, b) != meshtransport.PathDirect {
				return false
			}
		}
	}
	return true
}
