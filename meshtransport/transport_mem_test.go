package meshtransport

import (
	"bytes"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// These tests run the whole transport (queues, senders, probes, detours,
// chunking, reporting) over memNet inside synctest bubbles: time is virtual,
// so probe timeouts are exact and the tests are deterministic and fast, and
// they run under the race detector.

func TestMemExchange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, ra := n.newMem(t, "a", 1, Config{})
		b, rb := n.newMem(t, "b", 2, Config{})
		c, rc := n.newMem(t, "c", 3, Config{})
		waitFor(t, 5*time.Second, "all connected", func() bool { return connected(a, b, c) })

		a.Send([]*raftpb.Message{msg(1, 2, 10), msg(1, 3, 11)})
		b.Send([]*raftpb.Message{msg(2, 1, 12), msg(2, 3, 13)})
		c.Send([]*raftpb.Message{msg(3, 1, 14), msg(3, 2, 15)})
		waitFor(t, 5*time.Second, "six messages", func() bool {
			return rb.has(1, 10) && rc.has(1, 11) && ra.has(2, 12) && rc.has(2, 13) && ra.has(3, 14) && rb.has(3, 15)
		})
		var got *raftpb.Message
		for _, m := range rb.messages() {
			if m.GetFrom() == 1 {
				got = m
			}
		}
		if len(got.GetEntries()) != 1 || string(got.GetEntries()[0].GetData()) != "entry-10" || got.GetTo() != 2 || got.GetType() != raftpb.MsgApp {
			t.Fatalf("b got %+v, want the MsgApp with entry-10", got)
		}

		ps := a.Peers()
		if len(ps) != 3 {
			t.Fatalf("a.Peers() = %d peers, want 3", len(ps))
		}
		for i, p := range ps {
			if i > 0 && ps[i-1].Name >= p.Name {
				t.Errorf("Peers not sorted: %q before %q", ps[i-1].Name, p.Name)
			}
			if p.Self != (p.Name == a.PeerName()) {
				t.Errorf("peer %s Self = %v", p.Name, p.Self)
			}
			if !p.Live || !p.InMesh || p.Meta.RaftID == 0 || p.Meta.Role != "voter" {
				t.Errorf("peer %+v: want live, in mesh, with a raft id and role", p)
			}
		}
	})
}

func TestMemBatching(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, _ := n.newMem(t, "a", 1, Config{})
		b, rb := n.newMem(t, "b", 2, Config{})
		waitFor(t, 5*time.Second, "connected", func() bool { return connected(a, b) })

		const count = 2000
		msgs := make([]*raftpb.Message, count)
		for i := range msgs {
			msgs[i] = msg(1, 2, uint64(i+1))
		}
		before := a.Stats()
		a.Send(msgs)
		waitFor(t, 5*time.Second, "all messages", func() bool { return rb.stepCount() == count })
		frames := n.frameCount(a, b, kindRaft)
		t.Logf("%d messages in %d raft frames", count, frames)
		if frames > 4 {
			t.Errorf("%d raft frames for %d messages queued at once, want <= 4", frames, count)
		}
		st := a.Stats()
		if st.Sent-before.Sent != count {
			t.Errorf("Stats.Sent grew by %d, want %d", st.Sent-before.Sent, count)
		}
		if st.Unicasts-before.Unicasts >= count/10 {
			t.Errorf("Stats.Unicasts grew by %d for %d messages, want far fewer", st.Unicasts-before.Unicasts, count)
		}
		for i, m := range rb.messages() {
			if m.GetIndex() != uint64(i+1) {
				t.Fatalf("message %d has index %d: order within one link changed", i, m.GetIndex())
			}
		}
	})
}

func TestMemBatchSplitsAtFrameLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, _ := n.newMem(t, "a", 1, Config{})
		b, rb := n.newMem(t, "b", 2, Config{})
		waitFor(t, 5*time.Second, "connected", func() bool { return connected(a, b) })
		// 24 messages of 200 KiB: far over one frame, each under ChunkSize.
		msgs := make([]*raftpb.Message, 24)
		for i := range msgs {
			msgs[i] = newMsg(raftpb.MsgApp, 1, 2)
			msgs[i].Index = new(uint64(i + 1))
			msgs[i].Entries = []*raftpb.Entry{{Data: bytes.Repeat([]byte{byte(i)}, 200<<10)}}
		}
		a.Send(msgs)
		waitFor(t, 5*time.Second, "all messages", func() bool { return rb.stepCount() == len(msgs) })
		frames := n.frameCount(a, b, kindRaft)
		if frames < 5 || frames > 8 {
			t.Errorf("%d raft frames for 4.8 MiB, want 5..8 (each at most 1 MiB)", frames)
		}
		if c := n.frameCount(a, b, kindChunk); c != 0 {
			t.Errorf("%d chunks sent for messages under ChunkSize", c)
		}
	})
}

func TestMemSnapshotChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, ra := n.newMem(t, "a", 1, Config{})
		b, rb := n.newMem(t, "b", 2, Config{})
		waitFor(t, 5*time.Second, "connected", func() bool { return connected(a, b) })

		data := make([]byte, 5<<20)
		for i := range data {
			data[i] = byte(i * 7)
		}
		a.Send([]*raftpb.Message{snapMsg(1, 2, 3, 100, data), msg(1, 2, 7)})
		waitFor(t, 10*time.Second, "snapshot finish", func() bool { _, ok := ra.snapStatus(2); return ok })
		if st, _ := ra.snapStatus(2); st != raft.SnapshotFinish {
			t.Fatalf("ReportSnapshot = %v, want SnapshotFinish", st)
		}
		var got *raftpb.Message
		for _, m := range rb.messages() {
			if m.GetType() == raftpb.MsgSnap {
				got = m
			}
		}
		if got == nil || !bytes.Equal(got.GetSnapshot().GetData(), data) || got.GetSnapshot().GetMetadata().GetIndex() != 100 {
			t.Fatal("the snapshot did not arrive intact")
		}
		if !rb.has(1, 7) {
			t.Error("the message after the snapshot did not arrive")
		}
		chunks := n.frameCount(a, b, kindChunk)
		if chunks != 11 { // 5 MiB of data plus the message header
			t.Errorf("%d chunks, want 11", chunks)
		}
		if st := a.Stats(); st.SnapshotsSent != 1 || st.ChunksSent != 11 {
			t.Errorf("Stats = %+v, want SnapshotsSent 1 and ChunksSent 11", st)
		}
		if st := b.Stats(); st.ChunksReceived != 11 {
			t.Errorf("receiver ChunksReceived = %d, want 11", st.ChunksReceived)
		}
	})
}

func TestMemSnapshotFailsWhenReceiverGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, ra := n.newMem(t, "a", 1, Config{SnapshotTimeout: 5 * time.Second})
		b, _ := n.newMem(t, "b", 2, Config{})
		waitFor(t, 5*time.Second, "connected", func() bool { return connected(a, b) })
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		a.Send([]*raftpb.Message{snapMsg(1, 2, 0, 0, make([]byte, 2<<20))})
		waitFor(t, 10*time.Second, "snapshot report", func() bool { _, ok := ra.snapStatus(2); return ok })
		if st, _ := ra.snapStatus(2); st != raft.SnapshotFailure {
			t.Fatalf("ReportSnapshot = %v, want SnapshotFailure", st)
		}
		// A peer that vanishes silently (still listed by mesh) fails the
		// transfer at the snapshot timeout: dead probes alone do not, since
		// with no detour the chunks still go the direct way and may arrive.
		if d := time.Since(start); d > 6*time.Second {
			t.Errorf("failure reported after %v, want it by the snapshot timeout (5s)", d)
		}
		if ra.unreachableCount(2) == 0 {
			t.Error("no ReportUnreachable for the lost peer")
		}
	})
}

func TestMemSnapshotTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, ra := n.newMem(t, "a", 1, Config{SnapshotTimeout: 2 * time.Second})
		b, _ := n.newMem(t, "b", 2, Config{})
		waitFor(t, 5*time.Second, "connected", func() bool { return connected(a, b) })
		b.SetHandler(nil) // b stays alive (answers probes) but never acknowledges
		a.Send([]*raftpb.Message{snapMsg(1, 2, 0, 0, []byte("s"))})
		d := waitFor(t, 10*time.Second, "snapshot report", func() bool { _, ok := ra.snapStatus(2); return ok })
		if st, _ := ra.snapStatus(2); st != raft.SnapshotFailure {
			t.Fatalf("ReportSnapshot = %v, want SnapshotFailure", st)
		}
		if d < 2*time.Second || d > 3*time.Second {
			t.Errorf("failure after %v, want just after the 2s timeout", d)
		}
		if b.Stats().DroppedNoHandler == 0 {
			t.Error("receiver without handler did not count the drop")
		}
	})
}

func TestMemUnknownDestination(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, ra := n.newMem(t, "a", 1, Config{})
		a.Send([]*raftpb.Message{msg(1, 99, 1), snapMsg(1, 98, 0, 0, nil)})
		synctest.Wait()
		if ra.unreachableCount(99) != 1 || ra.unreachableCount(98) != 1 {
			t.Errorf("unreachable reports = %v, want one each for 98 and 99", ra.unreachable)
		}
		if st, ok := ra.snapStatus(98); !ok || st != raft.SnapshotFailure {
			t.Errorf("snapshot to unknown peer: report %v %v, want SnapshotFailure", st, ok)
		}
		if got := a.Stats().DroppedNoRoute; got != 2 {
			t.Errorf("DroppedNoRoute = %d, want 2", got)
		}
	})
}

// blockingHandler blocks in ReportUnreachable until released: if a report
// were made synchronously inside Send, Send would never return.
type blockingHandler struct {
	*recorder
	entered atomic.Int32
	release chan struct{}
}

func (h *blockingHandler) ReportUnreachable(id uint64) {
	h.entered.Add(1)
	<-h.release
	h.recorder.ReportUnreachable(id)
}

func TestMemQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, ra := n.newMem(t, "a", 1, Config{QueueLen: 50, ProbeInterval: time.Hour})
		b, rb := n.newMem(t, "b", 2, Config{ProbeInterval: time.Hour})
		waitFor(t, 5*time.Second, "b's raft id known", func() bool { return (*a.byRaft.Load())[2] != nil })
		bh := &blockingHandler{recorder: ra, release: make(chan struct{})}
		a.SetHandler(bh)

		n.cut(a, b, cutBlock) // the sender blocks in its first write
		a.Send([]*raftpb.Message{msg(1, 2, 1)})
		synctest.Wait() // the sender took message 1 and is stuck writing it
		msgs := make([]*raftpb.Message, 60)
		for i := range msgs {
			msgs[i] = msg(1, 2, uint64(i+2))
		}
		a.Send(msgs) // returns although the sender is stuck and the handler blocks
		if got := a.Stats().DroppedQueueFull; got != 10 {
			t.Errorf("DroppedQueueFull = %d, want 10", got)
		}
		synctest.Wait()
		if bh.entered.Load() != 1 {
			t.Errorf("reporter entered ReportUnreachable %d times, want 1 (coalesced, on its own goroutine)", bh.entered.Load())
		}
		close(bh.release)
		synctest.Wait()
		if ra.unreachableCount(2) == 0 {
			t.Error("no ReportUnreachable after queue overflow")
		}
		n.cut(a, b, cutNone)
		waitFor(t, 5*time.Second, "queued messages", func() bool { return rb.stepCount() == 51 })
	})
}

// triangle builds a, b, c with raft ids 1, 2, 3, all connected.
func triangle(t *testing.T, n *memNet) (a, b, c *Transport, ra, rb, rc *recorder) {
	t.Helper()
	a, ra = n.newMem(t, "a", 1, Config{})
	b, rb = n.newMem(t, "b", 2, Config{})
	c, rc = n.newMem(t, "c", 3, Config{})
	waitFor(t, 5*time.Second, "all connected", func() bool { return connected(a, b, c) })
	return a, b, c, ra, rb, rc
}

// detourGap sends a fresh message from src to dst every 5ms until one
// arrives and returns the time that took.
func detourGap(t *testing.T, src *Transport, rdst *recorder, from, to uint64) time.Duration {
	t.Helper()
	idx := uint64(1000)
	return waitFor(t, 5*time.Second, "a message through the detour", func() bool {
		idx++
		src.Send([]*raftpb.Message{msg(from, to, idx)})
		for i := uint64(1001); i <= idx; i++ {
			if rdst.has(from, i) {
				return true
			}
		}
		return false
	})
}

func TestMemDetourAroundBlackhole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, b, c, ra, _, rc := triangle(t, n)
		n.cutBoth(a, c, cutDrop)
		gap := detourGap(t, a, rc, 1, 3)
		t.Logf("a->c resumed %v after the cut (probe interval 100ms, 3 failures)", gap)
		if gap > time.Second {
			t.Errorf("detour took %v, want < 1s", gap)
		}
		// Replies come back the same way.
		gapBack := detourGap(t, c, ra, 3, 1)
		t.Logf("c->a resumed %v later", gapBack)

		pa, _ := peerOf(a, c)
		if !pa.Live || pa.Via != b.PeerName() {
			t.Errorf("a sees c as %+v, want live via b", pa)
		}
		if a.Stats().Detoured == 0 || b.Stats().Relayed == 0 {
			t.Errorf("Detoured=%d Relayed=%d, want both > 0", a.Stats().Detoured, b.Stats().Relayed)
		}

		// Healing switches back to the direct route.
		n.cutBoth(a, c, cutNone)
		waitFor(t, 2*time.Second, "direct route again", func() bool { p, _ := peerOf(a, c); return p.Live && p.Via == "" })
		before := b.Stats().Relayed
		a.Send([]*raftpb.Message{msg(1, 3, 5000)})
		waitFor(t, time.Second, "direct message", func() bool { return rc.has(1, 5000) })
		if got := b.Stats().Relayed; got != before {
			t.Errorf("b relayed %d frames after heal, want 0", got-before)
		}
	})
}

func TestMemDetourAroundStuckWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, b, c, _, _, rc := triangle(t, n)
		t.Cleanup(func() { n.cutBoth(a, c, cutNone) }) // release the stuck sender before Close
		// a's writes to c block for ever (a full socket buffer on a dead
		// path): a's sender for c is stuck, yet messages must get through b.
		n.cut(a, c, cutBlock)
		n.cut(c, a, cutDrop)
		gap := detourGap(t, a, rc, 1, 3)
		t.Logf("a->c resumed %v after the cut with a stuck writer", gap)
		if gap > time.Second {
			t.Errorf("detour took %v, want < 1s", gap)
		}
		if b.Stats().Relayed == 0 {
			t.Error("b relayed nothing")
		}
	})
}

func TestMemOneWayCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, b, c, ra, _, rc := triangle(t, n)
		n.cut(a, c, cutDrop) // only a->c is dead
		detourGap(t, a, rc, 1, 3)
		detourGap(t, c, ra, 3, 1)
		if a.Stats().Detoured == 0 {
			t.Error("a did not detour")
		}
		_ = b
	})
}

func TestMemNoDetourAvailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, ra := n.newMem(t, "a", 1, Config{})
		b, rb := n.newMem(t, "b", 2, Config{})
		waitFor(t, 5*time.Second, "connected", func() bool { return connected(a, b) })
		n.cutBoth(a, b, cutDrop)
		// The probe verdict (Peer.Live) changes before the monitor marks
		// the route dead; Send looks at the route.
		waitFor(t, 2*time.Second, "b's route dead", func() bool {
			p, _ := peerOf(a, b)
			l := a.link(b.name)
			return !p.Live && l != nil && l.route.Load().dead
		})
		before := a.Stats().Suspect
		a.Send([]*raftpb.Message{msg(1, 2, 1)})
		synctest.Wait()
		if a.Stats().Suspect != before+1 {
			t.Errorf("Suspect grew by %d, want 1: with no detour the message still goes the direct way", a.Stats().Suspect-before)
		}
		if ra.unreachableCount(2) == 0 {
			t.Error("no ReportUnreachable")
		}
		if rb.has(1, 1) {
			t.Error("message arrived through a cut")
		}
		// When the probes were wrong (the link works), the message arrives.
		n.cutBoth(a, b, cutNone)
		a.Send([]*raftpb.Message{msg(1, 2, 2)})
		synctest.Wait()
		if !rb.has(1, 2) {
			t.Error("a message for a peer the probes wrongly call dead was dropped")
		}
	})
}

func TestMemRelayNeverRelaysTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// a-b and b-c are cut; a->c and c->b work. A detour a->c->b is
		// possible, but then c must not pick a as relay towards anything
		// it reached through a: only peers seen live directly relay.
		n := newMemNet()
		a, b, c, _, rb, _ := triangle(t, n)
		n.cutBoth(a, b, cutDrop)
		detourGap(t, a, rb, 1, 2)
		pa, _ := peerOf(a, b)
		if pa.Via != c.PeerName() {
			t.Errorf("a reaches b via %q, want c", pa.Via)
		}
		if c.Stats().Relayed == 0 {
			t.Error("c relayed nothing")
		}
		// Now cut c-b as well: c no longer sees b live, so a has no detour
		// and nobody bounces frames around.
		n.cutBoth(c, b, cutDrop)
		waitFor(t, 2*time.Second, "b unreachable from a", func() bool { p, _ := peerOf(a, b); return !p.Live })
		relayed := c.Stats().Relayed + a.Stats().Relayed
		a.Send([]*raftpb.Message{msg(1, 2, 77)})
		synctest.Wait()
		if got := c.Stats().Relayed + a.Stats().Relayed; got != relayed {
			t.Errorf("%d frames relayed with no usable relay", got-relayed)
		}
	})
}

func TestMemForeignCluster(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, _ := n.newMem(t, "a", 1, Config{})
		b, rb := n.newMem(t, "b", 2, Config{})
		waitFor(t, 5*time.Second, "connected", func() bool { return connected(a, b) })
		a.SetClusterID(111)
		b.SetClusterID(222)
		a.Send([]*raftpb.Message{msg(1, 2, 1), msg(1, 2, 2)})
		waitFor(t, time.Second, "foreign drops", func() bool { return b.Stats().ForeignCluster > 0 })
		synctest.Wait()
		if rb.stepCount() != 0 {
			t.Fatalf("b stepped %d messages from another cluster", rb.stepCount())
		}
		b.SetClusterID(111)
		a.Send([]*raftpb.Message{msg(1, 2, 3)})
		waitFor(t, time.Second, "same-cluster message", func() bool { return rb.has(1, 3) })
	})
}

func TestMemOtherClusterNameIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, ra := n.newMem(t, "a", 1, Config{ClusterName: "x"})
		b, _ := n.newMem(t, "b", 2, Config{ClusterName: "y"})
		synctest.Wait()
		time.Sleep(time.Second)
		if p, ok := peerOf(a, b); !ok || p.Meta.ClusterName != "y" || p.Live {
			t.Errorf("a sees b as %+v, want listed with cluster y and not probed", p)
		}
		a.Send([]*raftpb.Message{msg(1, 2, 1)})
		synctest.Wait()
		if ra.unreachableCount(2) != 1 {
			t.Error("raft id of another cluster name resolved")
		}
		if b.Stats().ProbeReplies != 0 {
			t.Error("a probed a peer of another cluster name")
		}
	})
}

func TestMemChangesAndMeta(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, _ := n.newMem(t, "a", 1, Config{})
		b, _ := n.newMem(t, "b", 0, Config{})
		waitFor(t, 5*time.Second, "connected", func() bool { return connected(a, b) })
		for len(a.Changes()) > 0 {
			<-a.Changes()
		}
		b.SetMeta(Meta{RaftID: 9, ClusterID: 5, ClientURLs: []string{"http://b:2379"}, Role: "learner", App: []byte{1, 2}})
		select {
		case <-a.Changes():
		default:
			t.Fatal("no change signalled after b's SetMeta")
		}
		p, _ := peerOf(a, b)
		if p.Meta.RaftID != 9 || p.Meta.ClusterID != 5 || p.Meta.Role != "learner" || len(p.Meta.ClientURLs) != 1 || !bytes.Equal(p.Meta.App, []byte{1, 2}) {
			t.Errorf("a sees b's meta as %+v", p.Meta)
		}
		waitFor(t, time.Second, "raft id 9 resolvable", func() bool { return (*a.byRaft.Load())[9] != nil })
		// Peers returns copies.
		p.Meta.App[0] = 99
		if q, _ := peerOf(a, b); q.Meta.App[0] != 1 {
			t.Error("Peers exposes internal state")
		}
	})
}

func TestMemCloseAndHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, _ := n.newMem(t, "a", 1, Config{})
		b, rb := n.newMem(t, "b", 2, Config{})
		waitFor(t, 5*time.Second, "connected", func() bool { return connected(a, b) })
		b.SetHandler(nil)
		a.Send([]*raftpb.Message{msg(1, 2, 1)})
		waitFor(t, time.Second, "drop without handler", func() bool { return b.Stats().DroppedNoHandler == 1 })
		b.SetHandler(rb)
		a.Send([]*raftpb.Message{msg(1, 2, 2)})
		waitFor(t, time.Second, "message with handler", func() bool { return rb.has(1, 2) })

		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		a.Send([]*raftpb.Message{msg(1, 2, 3)})
		if a.Stats().DroppedClosed != 1 {
			t.Errorf("DroppedClosed = %d, want 1", a.Stats().DroppedClosed)
		}
		if err := a.Start(); err != ErrStopped {
			t.Errorf("Start after Close = %v, want ErrStopped", err)
		}
	})
}
