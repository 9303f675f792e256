package raftadaptertest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// recorder is a Peer that records what it receives.
type recorder struct {
	mu          sync.Mutex
	msgs        []*raftpb.Message
	unreachable []uint64
	snaps       map[uint64][]raft.SnapshotStatus
}

func newRecorder() *recorder { return &recorder{snaps: make(map[uint64][]raft.SnapshotStatus)} }

func (r *recorder) Step(m *raftpb.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
}

func (r *recorder) ReportUnreachable(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreachable = append(r.unreachable, id)
}

func (r *recorder) ReportSnapshot(id uint64, s raft.SnapshotStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snaps[id] = append(r.snaps[id], s)
}

func (r *recorder) indexes() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []uint64
	for _, m := range r.msgs {
		out = append(out, m.GetIndex())
	}
	return out
}

func (r *recorder) counts() (msgs, unreachable int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs), len(r.unreachable)
}

func waitIdle(t *testing.T, n *Network) NetworkStats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := n.Stats()
		if st.InFlight == 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("messages still in flight: %+v", st)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func msgs(from, to uint64, first, count int) []*raftpb.Message {
	out := make([]*raftpb.Message, count)
	for i := range out {
		index := uint64(first + i)
		out[i] = &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: new(from), To: new(to), Index: new(index),
			Entries: []*raftpb.Entry{{Index: new(index), Data: []byte("x")}}}
	}
	return out
}

func TestNetworkDeliversInOrder(t *testing.T) {
	n := NewNetwork(NetworkConfig{})
	defer n.Close()
	a, b := newRecorder(), newRecorder()
	n.Attach(1, a)
	n.Attach(2, b)
	n.Transport(1).Send(msgs(1, 2, 1, 50))
	st := waitIdle(t, n)
	got := b.indexes()
	if len(got) != 50 {
		t.Fatalf("delivered %d, want 50", len(got))
	}
	for i, idx := range got {
		if idx != uint64(i+1) {
			t.Fatalf("message %d has index %d: out of order", i, idx)
		}
	}
	if st.Sent != 50 || st.Delivered != 50 || st.Dropped != 0 {
		t.Fatalf("stats = %+v", st)
	}
	// Messages are copies made through the wire format.
	b.mu.Lock()
	data := b.msgs[0].GetEntries()[0].GetData()
	b.mu.Unlock()
	if string(data) != "x" {
		t.Fatalf("payload = %q", data)
	}
}

func TestNetworkCuts(t *testing.T) {
	n := NewNetwork(NetworkConfig{})
	defer n.Close()
	a, b := newRecorder(), newRecorder()
	n.Attach(1, a)
	n.Attach(2, b)

	n.Cut(1, 2) // one way
	n.Transport(1).Send(msgs(1, 2, 1, 3))
	n.Transport(2).Send(msgs(2, 1, 1, 2))
	waitIdle(t, n)
	if got, unreach := b.counts(); got != 0 {
		t.Fatalf("cut link delivered %d messages", got)
	} else if _, u := a.counts(); u != 3 {
		t.Fatalf("sender got %d unreachable reports, want 3 (receiver's %d)", u, unreach)
	}
	if got, _ := a.counts(); got != 2 {
		t.Fatalf("reverse direction delivered %d, want 2", got)
	}

	n.Uncut(1, 2)
	n.Disconnect(1, 2)
	n.Transport(2).Send(msgs(2, 1, 10, 1))
	waitIdle(t, n)
	if got, _ := a.counts(); got != 2 {
		t.Fatal("Disconnect did not cut 2->1")
	}
	n.Connect(1, 2)
	n.Isolate(2)
	n.Transport(1).Send(msgs(1, 2, 20, 1))
	waitIdle(t, n)
	if got, _ := b.counts(); got != 0 {
		t.Fatal("Isolate did not cut 1->2")
	}
	n.Rejoin(2)
	n.Transport(1).Send(msgs(1, 2, 30, 1))
	waitIdle(t, n)
	if got, _ := b.counts(); got != 1 {
		t.Fatal("Rejoin did not heal 1->2")
	}
	n.Detach(2)
	n.Transport(1).Send(msgs(1, 2, 40, 1))
	st := waitIdle(t, n)
	if got, _ := b.counts(); got != 1 {
		t.Fatal("delivered to a detached member")
	}
	if st.Dropped != 6 {
		t.Fatalf("dropped = %d, want 6", st.Dropped)
	}
}

func TestNetworkSnapshotReports(t *testing.T) {
	n := NewNetwork(NetworkConfig{})
	defer n.Close()
	a, b := newRecorder(), newRecorder()
	n.Attach(1, a)
	n.Attach(2, b)
	snap := &raftpb.Message{Type: raftpb.MsgSnap.Enum(), From: new(uint64(1)), To: new(uint64(2)),
		Snapshot: &raftpb.Snapshot{Data: []byte("s"), Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(5)), Term: new(uint64(1))}}}
	n.Transport(1).Send([]*raftpb.Message{snap})
	waitIdle(t, n)
	n.Cut(1, 2)
	n.Transport(1).Send([]*raftpb.Message{snap})
	waitIdle(t, n)
	n.Uncut(1, 2)
	n.SetDropRate(0.999)
	n.Transport(1).Send([]*raftpb.Message{snap})
	waitIdle(t, n)
	a.mu.Lock()
	got := a.snaps[2]
	a.mu.Unlock()
	want := []raft.SnapshotStatus{raft.SnapshotFinish, raft.SnapshotFailure, raft.SnapshotFailure}
	if len(got) != len(want) {
		t.Fatalf("snapshot reports = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("snapshot reports = %v, want %v", got, want)
		}
	}
}

func TestNetworkDropRateIsSeeded(t *testing.T) {
	run := func() (delivered []uint64) {
		n := NewNetwork(NetworkConfig{Seed: 3, DropRate: 0.3})
		defer n.Close()
		b := newRecorder()
		n.Attach(2, b)
		n.Transport(1).Send(msgs(1, 2, 1, 200))
		waitIdle(t, n)
		return b.indexes()
	}
	first, second := run(), run()
	if len(first) < 100 || len(first) > 180 {
		t.Fatalf("delivered %d of 200 at drop rate 0.3", len(first))
	}
	if len(first) != len(second) {
		t.Fatalf("same seed delivered %d then %d", len(first), len(second))
	}
	for i := range first {
		if first[i] != second[i] {
			t.Fatalf("same seed, different losses at %d", i)
		}
	}
}

func TestNetworkDelayReorders(t *testing.T) {
	n := NewNetwork(NetworkConfig{Seed: 1, MaxDelay: 5 * time.Millisecond})
	defer n.Close()
	b := newRecorder()
	n.Attach(2, b)
	n.Transport(1).Send(msgs(1, 2, 1, 100))
	waitIdle(t, n)
	got := b.indexes()
	if len(got) != 100 {
		t.Fatalf("delivered %d, want 100", len(got))
	}
	inOrder := true
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			inOrder = false
		}
	}
	if inOrder {
		t.Fatal("100 randomly delayed messages arrived in order")
	}
}

func TestNetworkClose(t *testing.T) {
	n := NewNetwork(NetworkConfig{MaxDelay: time.Hour})
	b := newRecorder()
	n.Attach(2, b)
	n.Transport(1).Send(msgs(1, 2, 1, 3))
	n.Close()
	n.Close()
	n.Transport(1).Send(msgs(1, 2, 1, 3)) // ignored after Close
	if st := n.Stats(); st.InFlight != 0 || st.Delivered != 0 {
		t.Fatalf("stats after Close = %+v", st)
	}
}

func TestNetworkInterceptDropsAndHolds(t *testing.T) {
	n := NewNetwork(NetworkConfig{})
	defer n.Close()
	b := newRecorder()
	n.Attach(2, b)
	n.Intercept(func(from uint64, m *raftpb.Message) Action {
		switch {
		case from != 1:
			return Deliver
		case m.GetIndex()%3 == 0:
			return Drop
		case m.GetIndex()%3 == 1:
			return Hold
		}
		return Deliver
	})
	n.Transport(1).Send(msgs(1, 2, 1, 9)) // 3, 6, 9 dropped; 1, 4, 7 held
	st := waitIdle(t, n)
	if got := b.indexes(); len(got) != 3 || got[0] != 2 || got[1] != 5 || got[2] != 8 {
		t.Fatalf("delivered %v before release, want [2 5 8]", got)
	}
	if st.Held != 3 || st.Dropped != 3 || st.Delivered != 3 {
		t.Fatalf("stats before release = %+v", st)
	}
	n.Intercept(nil)
	n.Transport(1).Send(msgs(1, 2, 10, 1))
	waitIdle(t, n)
	if got := n.Release(); got != 3 {
		t.Fatalf("Release = %d, want 3", got)
	}
	st = waitIdle(t, n)
	want := []uint64{2, 5, 8, 10, 1, 4, 7} // held ones arrive late, in the order held
	got := b.indexes()
	if len(got) != len(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivered %v, want %v", got, want)
		}
	}
	if st.Held != 0 || st.Delivered != 7 || st.Dropped != 3 || st.Sent != 10 {
		t.Fatalf("stats after release = %+v", st)
	}
	if n.Release() != 0 {
		t.Fatal("second Release found held messages")
	}
}

func TestNetworkInterceptDuplicates(t *testing.T) {
	n := NewNetwork(NetworkConfig{})
	defer n.Close()
	b := newRecorder()
	n.Attach(2, b)
	n.Intercept(func(_ uint64, m *raftpb.Message) Action {
		if m.GetIndex()%2 == 0 {
			return Duplicate
		}
		return Deliver
	})
	n.Transport(1).Send(msgs(1, 2, 1, 4)) // 2 and 4 duplicated
	st := waitIdle(t, n)
	if got := b.indexes(); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("delivered %v before release, want [1 2 3 4]", got)
	}
	if st.Held != 2 || st.Delivered != 4 {
		t.Fatalf("stats before release = %+v", st)
	}
	if got := n.Release(); got != 2 {
		t.Fatalf("Release = %d, want 2", got)
	}
	waitIdle(t, n)
	if got := b.indexes(); !slices.Equal(got, []uint64{1, 2, 3, 4, 2, 4}) {
		t.Fatalf("delivered %v, want [1 2 3 4 2 4]", got)
	}
}
