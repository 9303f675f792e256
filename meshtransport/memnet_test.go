package meshtransport_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/meshtransport"
)

func TestMemExchangeDirect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, nodes := memCluster(t, 3, nil)
		a, b, c := nodes[0], nodes[1], nodes[2]
		waitUntil(t, 5*time.Second, "all paths direct", func() bool {
			return pathOf(a, b) == meshtransport.PathDirect && pathOf(a, c) == meshtransport.PathDirect &&
				pathOf(b, c) == meshtransport.PathDirect
		})
		a.tr.Send([]*raftpb.Message{msg(a.id(), b.id(), 1), msg(a.id(), c.id(), 2), msg(a.id(), b.id(), 3)})
		waitUntil(t, time.Second, "delivery", func() bool { return b.rec.count(a.id()) == 2 && c.rec.count(a.id()) == 1 })
		if got := b.rec.indexes(a.id()); got[0] != 1 || got[1] != 3 {
			t.Fatalf("b got indexes %v, want [1 3]", got)
		}
		st := a.tr.Stats()
		if st.SentDirect != 3 || st.SentRelayed != 0 {
			t.Fatalf("stats: direct %d relayed %d, want 3 and 0", st.SentDirect, st.SentRelayed)
		}
	})
}

// TestMemCutReroutes: a silent cut between a and b takes their link down;
// traffic between them goes through c sealed, datagrams the dead link held
// are re-sent, and the path comes back to direct after the heal.
func TestMemCutReroutes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, nodes := memCluster(t, 3, nil)
		a, b := nodes[0], nodes[1]
		waitUntil(t, 5*time.Second, "all direct", func() bool { return allDirect(nodes) })

		net.Cut(a, b)
		// Sent into the cut: held by the link, handed back when it dies.
		a.tr.Send([]*raftpb.Message{msg(a.id(), b.id(), 1)})
		d := waitUntil(t, 5*time.Second, "a sees b relayed", func() bool { return pathOf(a, b) == meshtransport.PathRelayed })
		t.Logf("relayed after %v", d)
		waitUntil(t, time.Second, "the held message re-sent", func() bool { return b.rec.count(a.id()) == 1 })
		a.tr.Send([]*raftpb.Message{msg(a.id(), b.id(), 2)})
		b.tr.Send([]*raftpb.Message{msg(b.id(), a.id(), 3)})
		waitUntil(t, time.Second, "relayed delivery", func() bool { return b.rec.count(a.id()) == 2 && a.rec.count(b.id()) == 1 })
		if st := a.tr.Stats(); st.SentRelayed == 0 || st.Resent == 0 {
			t.Fatalf("stats: relayed %d, resent %d; want both > 0", st.SentRelayed, st.Resent)
		}
		// Stays relayed: probes over c are answered.
		time.Sleep(3 * time.Second)
		if p := pathOf(a, b); p != meshtransport.PathRelayed {
			t.Fatalf("path %v after 3s of a cut with a detour, want relayed", p)
		}
		net.Heal(a, b)
		waitUntil(t, 2*time.Second, "direct again", func() bool { return pathOf(a, b) == meshtransport.PathDirect })
	})
}

// TestMemOneWayCut: dropping only a's bytes to b still moves the pair to
// the relayed path, both ways.
func TestMemOneWayCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, nodes := memCluster(t, 3, nil)
		a, b := nodes[0], nodes[1]
		waitUntil(t, 5*time.Second, "all direct", func() bool { return allDirect(nodes) })
		net.CutOneWay(a, b)
		waitUntil(t, 5*time.Second, "relayed both ways", func() bool {
			return pathOf(a, b) == meshtransport.PathRelayed && pathOf(b, a) == meshtransport.PathRelayed
		})
		for i := range uint64(10) {
			a.tr.Send([]*raftpb.Message{msg(a.id(), b.id(), i)})
		}
		waitUntil(t, time.Second, "delivery", func() bool { return b.rec.count(a.id()) == 10 })
	})
}

// TestMemIsolatedPeerIsDead: with no link and no detour the path turns dead
// (after the route grace), messages are dropped and raft hears unreachable.
func TestMemIsolatedPeerIsDead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, nodes := memCluster(t, 3, nil)
		a, b := nodes[0], nodes[1]
		waitUntil(t, 5*time.Second, "all direct", func() bool { return allDirect(nodes) })
		net.Isolate(b)
		waitUntil(t, 5*time.Second, "b dead", func() bool { return pathOf(a, b) == meshtransport.PathDead })
		a.tr.Send([]*raftpb.Message{msg(a.id(), b.id(), 1)})
		waitUntil(t, time.Second, "unreachable reported", func() bool {
			a.rec.mu.Lock()
			defer a.rec.mu.Unlock()
			return a.rec.unreachable[b.id()] > 0
		})
		// Our gossip entry says we cannot reach b.
		waitUntil(t, 2*time.Second, "c learns that a cannot reach b", func() bool {
			for _, p := range nodes[2].tr.Peers() {
				if p.ID == a.tr.RaftID() {
					return len(p.Unreachable) == 1 && p.Unreachable[0] == b.tr.RaftID()
				}
			}
			return false
		})
		net.HealAll()
		waitUntil(t, 3*time.Second, "all direct again", func() bool { return allDirect(nodes) })
	})
}

// snapMsg builds a MsgSnap carrying size bytes of data.
func snapMsg(from, to uint64, size int) *raftpb.Message {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	return &raftpb.Message{Type: raftpb.MsgSnap.Enum(), From: new(from), To: new(to), Term: new(uint64(1)),
		Snapshot: &raftpb.Snapshot{Data: data, Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(10)), Term: new(uint64(1))}}}
}

func TestMemSnapshotDirect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, nodes := memCluster(t, 2, nil)
		a, b := nodes[0], nodes[1]
		waitUntil(t, 5*time.Second, "direct", func() bool { return allDirect(nodes) })
		a.tr.Send([]*raftpb.Message{snapMsg(a.id(), b.id(), 5*meshtransport.ChunkSize+123)})
		waitUntil(t, 5*time.Second, "snapshot reported", func() bool { return len(a.rec.snapshots()) == 1 })
		if st := a.rec.snapshots()[0]; st != raft.SnapshotFinish {
			t.Fatalf("snapshot status %v, want finish", st)
		}
		if b.rec.count(a.id()) != 1 || len(b.rec.msgs[0].GetSnapshot().GetData()) != 5*meshtransport.ChunkSize+123 {
			t.Fatal("snapshot not delivered whole")
		}
	})
}

// TestMemSnapshotSurvivesLinkDeath: the link dies in the middle of a
// transfer; the chunks it held are re-sent over the relayed path and the
// transfer completes.
func TestMemSnapshotSurvivesLinkDeath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, nodes := memCluster(t, 3, nil)
		a, b := nodes[0], nodes[1]
		waitUntil(t, 5*time.Second, "direct", func() bool { return allDirect(nodes) })
		net.SetDelay(a, b, 30*time.Millisecond)
		a.tr.Send([]*raftpb.Message{snapMsg(a.id(), b.id(), 40*meshtransport.ChunkSize)})
		time.Sleep(50 * time.Millisecond)
		net.Cut(a, b)
		waitUntil(t, 20*time.Second, "snapshot reported", func() bool { return len(a.rec.snapshots()) == 1 })
		if st := a.rec.snapshots()[0]; st != raft.SnapshotFinish {
			t.Fatalf("snapshot status %v, want finish", st)
		}
		st := a.tr.Stats()
		if st.ChunksSentRelayed == 0 {
			t.Fatalf("no chunk went over the relayed path: %+v", st)
		}
		if b.rec.count(a.id()) != 1 {
			t.Fatalf("b stepped %d snapshots, want 1", b.rec.count(a.id()))
		}
	})
}

// TestMemSnapshotFailsWithoutPath: with no path at all, the transfer fails
// by its timeout and raft hears it.
func TestMemSnapshotFailsWithoutPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, nodes := memCluster(t, 2, func(_ int, c *meshtransport.Config) { c.SnapshotTimeout = 2 * time.Second })
		a, b := nodes[0], nodes[1]
		waitUntil(t, 5*time.Second, "direct", func() bool { return allDirect(nodes) })
		net.Cut(a, b)
		waitUntil(t, 5*time.Second, "dead", func() bool { return pathOf(a, b) == meshtransport.PathDead })
		a.tr.Send([]*raftpb.Message{snapMsg(a.id(), b.id(), 3*meshtransport.ChunkSize)})
		waitUntil(t, 10*time.Second, "snapshot reported", func() bool { return len(a.rec.snapshots()) == 1 })
		if st := a.rec.snapshots()[0]; st != raft.SnapshotFailure {
			t.Fatalf("snapshot status %v, want failure", st)
		}
	})
}

// TestMemMemberMessages: membership messages arrive attributed to their
// sender, on the link or relayed.
func TestMemMemberMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, nodes := memCluster(t, 3, nil)
		a, b := nodes[0], nodes[1]
		waitUntil(t, 5*time.Second, "direct", func() bool { return allDirect(nodes) })
		send := func(m meshtransport.MemberMessage) meshtransport.MemberMessage {
			t.Helper()
			m.From = 12345 // ignored: the receiver learns it from the key
			if err := a.tr.SendMember(b.tr.RaftID(), m); err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-b.tr.MemberMessages():
				return got
			case <-time.After(2 * time.Second):
				t.Fatal("no membership message")
			}
			return meshtransport.MemberMessage{}
		}
		got := send(meshtransport.MemberMessage{Kind: meshtransport.MemberQuery, Nonce: 77})
		if got.Kind != meshtransport.MemberQuery || got.From != a.tr.RaftID() || got.Nonce != 77 {
			t.Fatalf("query arrived as %+v", got)
		}
		a.tr.SetClusterID(5)
		b.tr.SetClusterID(5)
		net.Cut(a, b)
		waitUntil(t, 5*time.Second, "relayed", func() bool { return pathOf(a, b) == meshtransport.PathRelayed })
		got = send(meshtransport.MemberMessage{Kind: meshtransport.MemberReply, Nonce: 77, Status: meshtransport.StatusRemoved,
			Term: 9, Index: 100, Leader: nodes[2].tr.RaftID()})
		if got.Kind != meshtransport.MemberReply || got.From != a.tr.RaftID() || got.Status != meshtransport.StatusRemoved ||
			got.Term != 9 || got.Index != 100 || got.Leader != nodes[2].tr.RaftID() || got.ClusterID != 5 {
			t.Fatalf("relayed reply arrived as %+v", got)
		}
		got = send(meshtransport.MemberMessage{Kind: meshtransport.RemovalNotice, Term: 3, Index: 4})
		if got.Kind != meshtransport.RemovalNotice || got.Term != 3 || got.Index != 4 {
			t.Fatalf("removal notice arrived as %+v", got)
		}
		// Another cluster's notice is dropped.
		a.tr.SetClusterID(6)
		if err := a.tr.SendMember(b.tr.RaftID(), meshtransport.MemberMessage{Kind: meshtransport.RemovalNotice}); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-b.tr.MemberMessages():
			t.Fatalf("a foreign cluster's notice arrived: %+v", m)
		case <-time.After(time.Second):
		}
		if err := a.tr.SendMember(999, meshtransport.MemberMessage{Kind: meshtransport.JoinRequest}); err == nil {
			t.Fatal("a message to an unknown member was accepted")
		}
	})
}

// TestMemUnknownDestinationAndQueue: messages to unknown raft ids are
// dropped and reported; a relayed queue that overflows drops the excess.
func TestMemUnknownDestinationAndQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, nodes := memCluster(t, 3, func(_ int, c *meshtransport.Config) { c.QueueLen = 16 })
		a, b := nodes[0], nodes[1]
		waitUntil(t, 5*time.Second, "direct", func() bool { return allDirect(nodes) })
		a.tr.Send([]*raftpb.Message{msg(a.id(), 4242, 1)})
		waitUntil(t, time.Second, "unreachable reported", func() bool {
			a.rec.mu.Lock()
			defer a.rec.mu.Unlock()
			return a.rec.unreachable[4242] == 1
		})
		net.Cut(a, b)
		waitUntil(t, 5*time.Second, "relayed", func() bool { return pathOf(a, b) == meshtransport.PathRelayed })
		var batch []*raftpb.Message
		for i := range uint64(100) {
			batch = append(batch, msg(a.id(), b.id(), i))
		}
		a.tr.Send(batch)
		st := a.tr.Stats()
		if st.Drops["queue-full"] == 0 || st.Drops["unknown-member"] != 1 {
			t.Fatalf("drops %v", st.Drops)
		}
	})
}

// TestMemSaysWhyNoLink: a configured peer we cannot link to is reported at
// warn, periodically, with the reason.
func TestMemSaysWhyNoLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf syncBuffer
		_, nodes := memCluster(t, 1, func(_ int, c *meshtransport.Config) {
			c.Peers = []string{"nobody:7000"}
			c.NoLinkLogEvery = 2 * time.Second
			c.Logger = slog.New(slog.NewTextHandler(&buf, nil))
		})
		_ = nodes
		time.Sleep(5 * time.Second)
		out := buf.String()
		if n := strings.Count(out, `msg="no link to a configured peer"`); n != 2 || !strings.Contains(out, `addr=nobody:7000 why="connection refused"`) {
			t.Fatalf("warned %d times in 5s, want 2:\n%s", n, out)
		}
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
