//go:build !race

// Adversarial tests over real sockets (real peer links and mesh routers on
// loopback; excluded from -race builds because mesh has data races of its
// own, see mesh_test.go). The attacker is built from this package: a
// transport holding the cluster secret, whose links and router it drives by
// hand to send what a well-behaved node never would.

package meshtransport

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weaveworks/mesh"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/internal/peerlink"
	"github.com/meshkv/meshkv/internal/raftwire"
)

const hostilePassword = "a long random cluster secret for the tests"

// logBuffer collects log lines for assertions (and the test log).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   testing.TB
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.buf.String(), s)
}

type stepRecorder struct {
	mu   sync.Mutex
	msgs []*raftpb.Message
}

func (r *stepRecorder) Step(m *raftpb.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}
func (r *stepRecorder) ReportUnreachable(uint64)                   {}
func (r *stepRecorder) ReportSnapshot(uint64, raft.SnapshotStatus) {}

func (r *stepRecorder) from(id MemberID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m.GetFrom() == uint64(id) {
			n++
		}
	}
	return n
}

// hostileNode starts a real transport; logs go to buf when given.
func hostileNode(t *testing.T, nick string, password string, peers []string, buf *logBuffer) (*Transport, *stepRecorder) {
	t.Helper()
	var h slog.Handler = slog.DiscardHandler
	if os.Getenv("MESHKV_TEST_DEBUG") != "" {
		h = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}).WithAttrs([]slog.Attr{slog.String("node", nick)})
	}
	if buf != nil {
		h = slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo})
	}
	off := false
	cfg := Config{ListenAddr: "127.0.0.1:0", Peers: peers, PeerDiscovery: &off, NickName: nick, ClusterName: "hostile", Logger: slog.New(h)}
	if password != "" {
		cfg.Password = []byte(password)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &stepRecorder{}
	tr.SetHandler(rec)
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr, rec
}

func waitCond(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func linkedTo(a, b *Transport) bool {
	p := a.peerByKey(b.id.PublicKey())
	return p != nil && p.linkUp.Load()
}

// TestMeshHostileNoPassword: without the cluster secret (none, or another
// one) a node cannot link, and the victim says so at warn with the
// attacker's address.
func TestMeshHostileNoPassword(t *testing.T) {
	logs := &logBuffer{t: t}
	victim, _ := hostileNode(t, "victim", hostilePassword, nil, logs)
	for _, pw := range []string{"", "the wrong password, long enough"} {
		var secret *peerlink.ClusterSecret
		if pw != "" {
			var err error
			if secret, err = peerlink.NewClusterSecret([]byte(pw)); err != nil {
				t.Fatal(err)
			}
		}
		id, err := peerlink.NewIdentity()
		if err != nil {
			t.Fatal(err)
		}
		att, err := peerlink.New(peerlink.Config{Identity: id, ClusterSecret: secret, ClusterName: "hostile",
			AppHello: appendHello(nil, SealKey{9})})
		if err != nil {
			t.Fatal(err)
		}
		if err := att.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = att.Close() })
		if err := att.SetTargets([]string{victim.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	waitCond(t, 10*time.Second, "handshake failures logged", func() bool {
		return victim.Stats().Links.HandshakeFailures["certificate"] >= 2 && logs.contains("level=WARN msg=\"peerlink: handshake failed\"")
	})
	time.Sleep(time.Second)
	if n := len(victim.links.Links()); n != 0 {
		t.Fatalf("victim has %d links to nodes without the secret", n)
	}
	if !logs.contains("remote=127.0.0.1:") {
		t.Fatal("the handshake failure does not name the peer's address")
	}
}

// hostileTrio starts two honest nodes and an attacker holding the secret,
// all linked.
func hostileTrio(t *testing.T) (a, b, x *Transport, ra, rb *stepRecorder) {
	t.Helper()
	a, ra = hostileNode(t, "a", hostilePassword, nil, nil)
	b, rb = hostileNode(t, "b", hostilePassword, []string{a.Addr()}, nil)
	x, _ = hostileNode(t, "x", hostilePassword, []string{a.Addr(), b.Addr()}, nil)
	waitCond(t, 15*time.Second, "all linked", func() bool {
		hop, ok := x.router.NextHop(a.PeerName())
		meshUp := ok && hop == a.PeerName() && x.Stats().Router.Connections == 2
		return linkedTo(a, b) && linkedTo(a, x) && linkedTo(b, x) && a.peerByID(b.RaftID()) != nil && meshUp
	})
	return a, b, x, ra, rb
}

// raftFrame builds a raft batch frame with the given header sender.
func raftFrame(t *testing.T, cluster uint64, hdrFrom, to MemberID, msgs ...*raftpb.Message) []byte {
	t.Helper()
	f := appendHeader(nil, header{kind: kindRaft, cluster: cluster, from: uint64(hdrFrom), to: uint64(to)})
	for _, m := range msgs {
		var err error
		if f, err = appendRaftMsg(f, m, raftwire.Size(m)); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func appMsg(from, to MemberID) *raftpb.Message {
	return &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: new(uint64(from)), To: new(uint64(to)), Term: new(uint64(99))}
}

// TestMeshHostileMemberCannotSpeakForOthers: an attacker that holds the
// secret cannot make the transport deliver a raft message from another
// member (on the link or sealed over the mesh, whole or in chunks), cannot
// seal under another member's key, and cannot replay a sealed frame.
func TestMeshHostileMemberCannotSpeakForOthers(t *testing.T) {
	a, b, x, ra, _ := hostileTrio(t)
	dropped := func(why dropReason) uint64 { return a.stats.drops[why].Load() }
	before := dropped(dropSpoofed)

	// On the link: a header claiming b, a message claiming b, a chunked
	// snapshot claiming b.
	x.links.Send(a.id.PublicKey(), raftFrame(t, 0, b.RaftID(), a.RaftID(), appMsg(b.RaftID(), a.RaftID())))
	x.links.Send(a.id.PublicKey(), raftFrame(t, 0, x.RaftID(), a.RaftID(), appMsg(b.RaftID(), a.RaftID())))
	snap := &raftpb.Message{Type: raftpb.MsgSnap.Enum(), From: new(uint64(b.RaftID())), To: new(uint64(a.RaftID())), Term: new(uint64(99)),
		Snapshot: &raftpb.Snapshot{Data: bytes.Repeat([]byte("s"), 2*ChunkSize), Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(1e6)), Term: new(uint64(99))}}}
	data, err := raftwire.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	o := newOutTransfer(1, uint64(a.RaftID()), true, data, time.Now())
	for i := range o.count {
		ch, d := o.chunk(i)
		f := appendChunk(appendHeader(nil, header{kind: kindChunk, from: uint64(x.RaftID()), to: uint64(a.RaftID()), seq: 1}), ch, d)
		x.links.Send(a.id.PublicKey(), f)
	}
	waitCond(t, 5*time.Second, "spoofs dropped", func() bool { return dropped(dropSpoofed)-before >= 3 })

	// Sealed: x seals under its own key a frame claiming b; x claims b's
	// key as origin without b's sealing key.
	pa := x.peerByKey(a.id.PublicKey())
	frame := raftFrame(t, 0, b.RaftID(), a.RaftID(), appMsg(b.RaftID(), a.RaftID()))
	env := seal(nil, pa.cipher(), x.id.PublicKey(), a.id.PublicKey(), "hostile", pa.sendCtr.Add(1), frame)
	if err := x.router.Unicast(a.PeerName(), env); err != nil {
		t.Fatal(err)
	}
	forgedOrigin := seal(nil, pa.cipher(), b.id.PublicKey(), a.id.PublicKey(), "hostile", 1, frame)
	if err := x.router.Unicast(a.PeerName(), forgedOrigin); err != nil {
		t.Fatal(err)
	}
	waitCond(t, 5*time.Second, "sealed spoofs dropped", func() bool {
		return dropped(dropSpoofed)-before >= 4 && dropped(dropBadSeal) >= 1
	})

	// Replay: a genuine sealed message from x, sent three times.
	genuine := raftFrame(t, 0, x.RaftID(), a.RaftID(), appMsg(x.RaftID(), a.RaftID()))
	env = seal(nil, pa.cipher(), x.id.PublicKey(), a.id.PublicKey(), "hostile", pa.sendCtr.Add(1), genuine)
	for range 3 {
		if err := x.router.Unicast(a.PeerName(), env); err != nil {
			t.Fatal(err)
		}
	}
	waitCond(t, 5*time.Second, "replays dropped", func() bool { return dropped(dropReplay) >= 2 })
	if n := ra.from(x.RaftID()); n != 1 {
		t.Fatalf("a stepped %d messages from x, want the genuine one once", n)
	}
	if n := ra.from(b.RaftID()); n != 0 {
		t.Fatalf("a stepped %d messages claiming to be from b", n)
	}
}

// TestMeshHostileGossipAboutOthers: the attacker gossips an entry with b's
// key (pointing b's address at itself); nobody takes it.
func TestMeshHostileGossipAboutOthers(t *testing.T) {
	a, b, x, _, _ := hostileTrio(t)
	waitCond(t, 5*time.Second, "a holds b's entry", func() bool {
		_, ok := a.gossip.live()[b.PeerName()]
		return ok
	})
	forged := &entry{pub: b.id.PublicKey(), seal: x.id.SealKey(), version: 1 << 40, addr: x.Addr(),
		meta: Meta{ClusterName: "hostile", Role: "leaving"}}
	signEntry(x.id, forged)
	x.router.Broadcast(&gossipData{entries: map[PeerName]*entry{b.PeerName(): forged}})
	waitCond(t, 5*time.Second, "forgery counted", func() bool { return a.gossip.forged.Load() > 0 })
	h := a.gossip.live()[b.PeerName()]
	if h.e.addr != b.Addr() || h.e.meta.Role == "leaving" {
		t.Fatalf("a holds a forged entry for b: %+v", h.e)
	}
}

// TestMeshHostilePartialTransfers: an attacker sends the first chunk of
// one huge transfer after another, and sealed chunks under origins it
// does not own; the victim holds at most one chunk for it.
func TestMeshHostilePartialTransfers(t *testing.T) {
	a, _, x, _, _ := hostileTrio(t)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	chunk := bytes.Repeat([]byte{7}, ChunkSize)
	total := uint64(1 << 30)
	count := uint32(total / ChunkSize)
	pa := x.peerByKey(a.id.PublicKey())
	for id := uint64(1); id <= 200; id++ {
		f := appendChunk(appendHeader(nil, header{kind: kindChunk, from: uint64(x.RaftID()), to: uint64(a.RaftID()), seq: id}),
			chunkHeader{index: 0, count: count, total: total, sum: 1}, chunk)
		if id%2 == 0 {
			for !x.links.Send(a.id.PublicKey(), f) {
				time.Sleep(time.Millisecond)
			}
			continue
		}
		// Sealed, under an origin key nobody owns.
		var fake peerlink.PublicKey
		fake[0], fake[1] = byte(id), byte(id>>8)
		if err := x.router.Unicast(a.PeerName(), seal(nil, pa.cipher(), fake, a.id.PublicKey(), "hostile", id, f)); err != nil {
			t.Fatal(err)
		}
	}
	waitCond(t, 20*time.Second, "chunks processed", func() bool {
		s := a.Stats()
		return s.ChunksReceived >= 100 && s.Drops[dropUnknownOrigin.String()] >= 100
	})
	if held := a.Stats().ReassemblyBytes; held > ChunkSize {
		t.Fatalf("victim holds %d bytes of partial transfers, want at most one chunk", held)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if grew := int64(ms.HeapInuse) - int64(base); grew > 64<<20 {
		t.Fatalf("heap grew by %d MiB", grew>>20)
	}
}

// TestMeshHostileFloodDoesNotLockOut: a flood of connections to the mesh
// port from one address does not keep a legitimate peer out.
func TestMeshHostileFloodDoesNotLockOut(t *testing.T) {
	victim, _ := hostileNode(t, "victim", hostilePassword, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 5)}, Timeout: time.Second}
			for ctx.Err() == nil {
				c, err := d.DialContext(ctx, "tcp", victim.Addr())
				if err == nil {
					_, _ = c.Write(bytes.Repeat([]byte{0x16, 3, 1}, 100))
					_ = c.Close()
				}
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	time.Sleep(500 * time.Millisecond)
	legit, _ := hostileNode(t, "legit", hostilePassword, []string{victim.Addr()}, nil)
	start := time.Now()
	waitCond(t, 10*time.Second, "the legitimate peer links during the flood", func() bool { return linkedTo(victim, legit) })
	t.Logf("linked %v after joining a flood; flood connections refused: %d", time.Since(start), victim.Stats().Links.RejectedRate)
	if victim.Stats().Links.RejectedRate == 0 {
		t.Fatal("the flood was not rate-limited")
	}
}

// TestMeshLoopbackStrangerRefused: a local process that runs its own mesh
// router and connects to our loopback mesh port is refused by the
// verifying overlay: it never becomes a route, and cannot gossip to us.
func TestMeshLoopbackStrangerRefused(t *testing.T) {
	a, b, _, _, _ := hostileTrio(t)
	mr := a.router.(*meshRouter)
	gi := 100 * time.Millisecond
	stranger, err := mesh.NewRouter(mesh.Config{Host: "127.0.0.1", Port: freePort(t), ProtocolMinVersion: 2, GossipInterval: &gi},
		PeerName(0x0a0b0c0d0e0f), "stranger", mesh.NullOverlay{}, meshLogger{slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	stranger.Start() // mesh cannot stop it; it lingers until the test binary exits
	stranger.ConnectionMaker.InitiateConnections([]string{mr.Addr()}, false)
	waitCond(t, 5*time.Second, "the stranger refused", func() bool { return a.Stats().Router.RefusedConnections > 0 })
	if _, ok := a.router.NextHop(PeerName(0x0a0b0c0d0e0f)); ok {
		t.Fatal("the stranger became a route")
	}
	if _, ok := a.router.NextHop(b.PeerName()); !ok {
		t.Fatal("the honest peer lost its route")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
