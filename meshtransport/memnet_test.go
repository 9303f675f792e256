package meshtransport

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weaveworks/mesh"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// memNet is an in-memory stand-in for mesh: every transport reaches every
// other one directly, metadata gossip is instant and lossless, and each
// directed link can be cut. It lets the transport's own logic run under the
// race detector and inside testing/synctest bubbles.
type memNet struct {
	mu     sync.Mutex
	nodes  map[mesh.PeerName]*Transport
	cuts   map[[2]mesh.PeerName]cutMode
	healc  chan struct{} // closed and replaced by every heal, wakes blocked writers
	frames map[[2]mesh.PeerName]map[frameKind]int
	next   mesh.PeerName
}

type cutMode int

const (
	cutNone  cutMode = iota
	cutDrop          // writes succeed, nothing arrives (a blackhole)
	cutError         // writes fail (mesh has no route)
	cutBlock         // writes block until healed (a full socket buffer on a dead path)
)

var errMemNoRoute = errors.New("memnet: no route")

func newMemNet() *memNet {
	return &memNet{
		nodes:  make(map[mesh.PeerName]*Transport),
		cuts:   make(map[[2]mesh.PeerName]cutMode),
		healc:  make(chan struct{}),
		frames: make(map[[2]mesh.PeerName]map[frameKind]int),
		next:   0x0a0000000000,
	}
}

// cut sets the mode of the directed link a->b.
func (n *memNet) cut(a, b *Transport, mode cutMode) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cuts[[2]mesh.PeerName{a.name, b.name}] = mode
	if mode == cutNone {
		close(n.healc)
		n.healc = make(chan struct{})
	}
}

// cutBoth cuts a->b and b->a.
func (n *memNet) cutBoth(a, b *Transport, mode cutMode) {
	n.cut(a, b, mode)
	n.cut(b, a, mode)
}

// frameCount is how many frames of kind went from a to b and arrived.
func (n *memNet) frameCount(a, b *Transport, k frameKind) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.frames[[2]mesh.PeerName{a.name, b.name}][k]
}

type memEndpoint struct {
	n    *memNet
	self mesh.PeerName
}

var _ network = (*memEndpoint)(nil)

func (e *memEndpoint) unicast(dst mesh.PeerName, frame []byte) error {
	for {
		e.n.mu.Lock()
		mode := e.n.cuts[[2]mesh.PeerName{e.self, dst}]
		to := e.n.nodes[dst]
		healc := e.n.healc
		e.n.mu.Unlock()
		switch {
		case to == nil || mode == cutError:
			return errMemNoRoute
		case mode == cutDrop:
			return nil
		case mode == cutBlock:
			<-healc
			continue
		}
		e.n.mu.Lock()
		key := [2]mesh.PeerName{e.self, dst}
		if e.n.frames[key] == nil {
			e.n.frames[key] = make(map[frameKind]int)
		}
		e.n.frames[key][frameKind(frame[1])]++
		e.n.mu.Unlock()
		return to.raw.OnGossipUnicast(e.self, bytes.Clone(frame))
	}
}

func (e *memEndpoint) peers() []mesh.PeerDescription {
	e.n.mu.Lock()
	defer e.n.mu.Unlock()
	var out []mesh.PeerDescription
	for _, name := range slices.Sorted(maps.Keys(e.n.nodes)) {
		out = append(out, mesh.PeerDescription{Name: name, NickName: e.n.nodes[name].cfg.NickName, Self: name == e.self})
	}
	return out
}

// direct: the in-memory network connects every pair of nodes.
func (e *memEndpoint) direct(mesh.PeerName) bool { return true }

func (e *memEndpoint) dial(string) error { return nil }

func (e *memEndpoint) broadcast(d mesh.GossipData) {
	e.n.mu.Lock()
	var others []*Transport
	for name, t := range e.n.nodes {
		if name != e.self {
			others = append(others, t)
		}
	}
	e.n.mu.Unlock()
	for _, msg := range d.Encode() {
		for _, o := range others {
			if _, err := o.meta.OnGossipBroadcast(e.self, msg); err != nil {
				panic(err)
			}
		}
	}
}

// add joins t to the network, exchanges full metadata both ways and starts
// its goroutines.
func (n *memNet) add(t *Transport) {
	n.mu.Lock()
	others := slices.Collect(maps.Values(n.nodes))
	n.nodes[t.name] = t
	n.mu.Unlock()
	for _, o := range others {
		for _, msg := range o.meta.Gossip().Encode() {
			_, _ = t.meta.OnGossip(msg)
		}
		for _, msg := range t.meta.Gossip().Encode() {
			_, _ = o.meta.OnGossip(msg)
		}
		signal(o.refreshc)
	}
	t.mu.Lock()
	t.startLoops()
	t.mu.Unlock()
}

// newMem creates and starts an in-memory transport with raft id raftID (0 =
// none) and a recording handler.
func (n *memNet) newMem(t *testing.T, nick string, raftID uint64, cfg Config) (*Transport, *recorder) {
	t.Helper()
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = 100 * time.Millisecond
	}
	cfg.NickName = nick
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg = cfg.withDefaults()
	cfg.Logger = testLogger(t)
	n.mu.Lock()
	n.next++
	name := n.next
	n.mu.Unlock()
	tr, err := newTransport(cfg, name)
	if err != nil {
		t.Fatal(err)
	}
	tr.net = &memEndpoint{n: n, self: name}
	rec := newRecorder()
	tr.SetHandler(rec)
	tr.SetMeta(Meta{RaftID: raftID, Role: "voter"})
	n.add(tr)
	t.Cleanup(func() { _ = tr.Close() })
	return tr, rec
}

// recorder is a Handler that records everything.
type recorder struct {
	mu          sync.Mutex
	steps       []*raftpb.Message
	unreachable map[uint64]int
	snaps       []snapReport
}

var _ Handler = (*recorder)(nil)

func newRecorder() *recorder { return &recorder{unreachable: make(map[uint64]int)} }

func (r *recorder) Step(m *raftpb.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps = append(r.steps, m)
}

func (r *recorder) ReportUnreachable(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreachable[id]++
}

func (r *recorder) ReportSnapshot(id uint64, st raft.SnapshotStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snaps = append(r.snaps, snapReport{to: id, status: st})
}

func (r *recorder) stepCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.steps)
}

func (r *recorder) messages() []*raftpb.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.steps)
}

// has reports whether a message from `from` with Index idx arrived.
func (r *recorder) has(from, idx uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.steps, func(m *raftpb.Message) bool { return m.GetFrom() == from && m.GetIndex() == idx })
}

func (r *recorder) unreachableCount(id uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unreachable[id]
}

func (r *recorder) snapStatus(id uint64) (raft.SnapshotStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.snaps {
		if s.to == id {
			return s.status, true
		}
	}
	return 0, false
}

// waitFor polls cond until it holds, failing the test after limit. Inside a
// synctest bubble the polling costs no real time.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	return time.Since(start)
}

// peerOf returns the Peer entry for tr as seen by from.
func peerOf(from, tr *Transport) (Peer, bool) {
	for _, p := range from.Peers() {
		if p.Name == tr.PeerName() {
			return p, true
		}
	}
	return Peer{}, false
}

// connected reports whether every transport resolves every other one's raft
// id and probes it live directly.
func connected(trs ...*Transport) bool {
	for _, a := range trs {
		for _, b := range trs {
			if a == b {
				continue
			}
			p, ok := peerOf(a, b)
			if !ok || !p.Live || p.Via != "" {
				return false
			}
			if id := b.ownRaft.Load(); id != 0 && (*a.byRaft.Load())[id] == nil {
				return false
			}
		}
	}
	return true
}

func msg(from, to, idx uint64) *raftpb.Message {
	m := newMsg(raftpb.MsgApp, from, to)
	m.Index, m.Term = new(idx), new(uint64(1))
	m.Entries = []*raftpb.Entry{{Term: new(uint64(1)), Index: new(idx), Data: []byte(fmt.Sprintf("entry-%d", idx))}}
	return m
}

// newMsg returns a message of type typ from one raft id to another.
func newMsg(typ raftpb.MessageType, from, to uint64) *raftpb.Message {
	return &raftpb.Message{Type: typ.Enum(), From: new(from), To: new(to)}
}

// snapMsg returns a MsgSnap carrying data and a snapshot index.
func snapMsg(from, to, term, index uint64, data []byte) *raftpb.Message {
	m := newMsg(raftpb.MsgSnap, from, to)
	m.Term = new(term)
	m.Snapshot = &raftpb.Snapshot{Data: data, Metadata: &raftpb.SnapshotMetadata{Index: new(index), Term: new(term)}}
	return m
}
