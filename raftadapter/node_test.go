package raftadapter_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/raftadapter"
	"github.com/meshkv/meshkv/raftadapter/raftadaptertest"
)

func TestSingleNodeProposeApply(t *testing.T) {
	c := newCluster(t, 1, raftadaptertest.NetworkConfig{}, nil)
	if got := c.waitLeader(); got != 1 {
		t.Fatalf("leader = %d, want 1", got)
	}
	n, kv := c.nodes[1], c.kvs[1]

	res := c.put(1, "a", "1")
	if res.Existed || res.Index == 0 {
		t.Fatalf("first put result = %+v, want new key at nonzero index", res)
	}
	if v, ok := kv.Get("a"); !ok || v != "1" {
		t.Fatalf("kv[a] = %q, %v; want 1", v, ok)
	}
	res2 := c.put(1, "a", "2")
	if !res2.Existed || res2.Prev != "1" || res2.Index <= res.Index {
		t.Fatalf("second put result = %+v after %+v", res2, res)
	}

	// The state machine's result comes back as is, even an error value.
	got, err := n.Propose(context.Background(), []byte("no-equals-sign"))
	if err != nil {
		t.Fatalf("Propose(bad command): %v", err)
	}
	if err, ok := got.(error); !ok || !errors.Is(err, raftadaptertest.ErrBadCommand) {
		t.Fatalf("Propose(bad command) result = %v, want ErrBadCommand", got)
	}

	// Concurrent proposals: every caller gets its own entry's result.
	const workers, each = 32, 20
	var mu sync.Mutex
	indexes := make(map[uint64]string)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				key := string(rune('A'+w)) + string(rune('a'+i))
				r, err := n.Propose(context.Background(), raftadaptertest.Put(key, "v"))
				if err != nil {
					t.Errorf("Propose(%s): %v", key, err)
					return
				}
				pr := r.(raftadaptertest.PutResult)
				mu.Lock()
				if other, dup := indexes[pr.Index]; dup {
					t.Errorf("index %d returned to %s and %s", pr.Index, other, key)
				}
				indexes[pr.Index] = key
				mu.Unlock()
				if v, _ := kv.Get(key); v != "v" {
					t.Errorf("kv[%s] = %q right after Propose returned", key, v)
				}
			}
		})
	}
	wg.Wait()
	if err := n.ReadIndex(context.Background()); err != nil {
		t.Fatalf("ReadIndex: %v", err)
	}
	m := n.Status().Metrics
	if want := uint64(workers*each + 3); m.Proposals != want {
		t.Errorf("Metrics.Proposals = %d, want %d", m.Proposals, want)
	}
	if m.ProposalBatches == 0 || m.ProposalBatches > m.Proposals {
		t.Errorf("Metrics.ProposalBatches = %d for %d proposals", m.ProposalBatches, m.Proposals)
	}
	if m.LeaderChanges != 1 {
		t.Errorf("Metrics.LeaderChanges = %d on a lone voter, want 1", m.LeaderChanges)
	}
	if m.PendingProposals != 0 || m.PendingReads != 0 {
		t.Errorf("pending proposals/reads = %d/%d after all returned, want 0/0", m.PendingProposals, m.PendingReads)
	}
	t.Logf("single node: %d proposals in %d batches", m.Proposals, m.ProposalBatches)
}

func TestProposeNoLeader(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	// Nobody has ticked, so there is no leader: raft drops the proposal.
	_, err := c.nodes[2].Propose(context.Background(), raftadaptertest.Put("a", "1"))
	if !errors.Is(err, raftadapter.ErrNoLeader) {
		t.Fatalf("Propose without leader: err = %v, want ErrNoLeader", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err = c.nodes[2].ReadIndex(ctx)
	if !errors.Is(err, raftadapter.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadIndex without leader: err = %v, want ErrTimeout wrapping DeadlineExceeded", err)
	}
	if m := c.nodes[2].Status().Metrics; m.ProposalsDropped != 1 {
		t.Errorf("ProposalsDropped = %d, want 1", m.ProposalsDropped)
	}
}

func TestProposeContextEnds(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	lead := c.waitLeader()
	n := c.nodes[lead]

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.Propose(ctx, raftadaptertest.Put("x", "1")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Propose with cancelled ctx: err = %v, want context.Canceled", err)
	}

	// Cut the leader off so the entry cannot commit, then give up on it.
	for _, f := range c.others(lead) {
		c.net.Disconnect(lead, f)
	}
	ctx, cancel = context.WithCancel(context.Background())
	done := async(func() error {
		_, err := n.Propose(ctx, raftadaptertest.Put("orphan", "1"))
		return err
	})
	eventually(t, 10*time.Second, "proposal pending", func() bool { return n.Status().Metrics.PendingProposals == 1 })
	assertPending(t, done, "Propose without quorum")
	cancel()
	if err := result(t, done, "cancelled Propose"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Propose: err = %v, want context.Canceled", err)
	}
	c.waitFor("waiter cleaned up", 0, func() bool { return n.Status().Metrics.PendingProposals == 0 })

	// Heal before the leader's election timeout: its entry still commits and
	// is applied everywhere, though nobody waits for it any more.
	for _, f := range c.others(lead) {
		c.net.Connect(lead, f)
	}
	c.waitFor("orphan entry applied everywhere", 5, func() bool {
		for _, id := range c.ids {
			if v, _ := c.kvs[id].Get("orphan"); v != "1" {
				return false
			}
		}
		return true
	})
	if got := c.leaderAmong(c.ids...); got != lead {
		t.Fatalf("leader changed from %d to %d", lead, got)
	}

	dctx, dcancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer dcancel()
	c.net.Disconnect(lead, c.others(lead)[0])
	c.net.Disconnect(lead, c.others(lead)[1])
	_, err := n.Propose(dctx, raftadaptertest.Put("late", "1"))
	if !errors.Is(err, raftadapter.ErrTimeout) {
		t.Fatalf("Propose past deadline: err = %v, want ErrTimeout", err)
	}
}

func TestCloseIsGracefulAndFinal(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	lead := c.waitLeader()
	c.put(lead, "a", "1")
	n := c.nodes[lead]
	changes := n.Changes()

	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The leader handed over before stopping, so the others have a leader
	// without waiting for an election timeout.
	rest := c.others(lead)
	c.waitFor("leader after graceful close", 2, func() bool { return c.leaderAmong(rest...) != 0 })

	select {
	case <-changes:
	default:
		t.Error("Changes channel not closed after Close")
	}
	if st := n.Status(); !st.Stopped || st.IsLeader {
		t.Errorf("Status after Close = stopped %v leader %v, want stopped non-leader", st.Stopped, st.IsLeader)
	}
	ctx := context.Background()
	for name, err := range map[string]error{
		"Propose":            func() error { _, err := n.Propose(ctx, raftadaptertest.Put("b", "1")); return err }(),
		"ReadIndex":          n.ReadIndex(ctx),
		"AddLearner":         n.AddLearner(ctx, 9, nil),
		"Promote":            n.Promote(ctx, 9),
		"RemoveMember":       n.RemoveMember(ctx, 2),
		"TransferLeadership": n.TransferLeadership(ctx, 2),
		"Tick":               n.Tick(),
	} {
		if !errors.Is(err, raftadapter.ErrStopped) {
			t.Errorf("%s after Close: err = %v, want ErrStopped", name, err)
		}
	}
	// Transport callbacks after Close are ignored, never block or panic.
	n.Step(&raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), To: new(lead), From: new(rest[0]), Term: new(uint64(100))})
	n.ReportUnreachable(rest[0])
	n.ReportSnapshot(rest[0], raft.SnapshotFailure)
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	c.put(rest[0], "b", "2")
}

// A lone voter leads at once: no election timeout, not even one tick.
func TestLoneVoterLeadsWithoutTicks(t *testing.T) {
	n, err := raftadapter.New(raftadapter.Config{ID: 7, Peers: []uint64{7}, DisableTicker: true, Logger: testLogger(t, 7)},
		raftadaptertest.NewKV(), nopTransport{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.Propose(ctx, raftadaptertest.Put("a", "1")); err != nil {
		t.Fatalf("Propose without any tick: %v", err)
	}
	if st := n.Status(); !st.IsLeader {
		t.Fatalf("status = %+v, want leader", st)
	}
}

type nopTransport struct{}

func (nopTransport) Send([]*raftpb.Message) {}

// LeaderTerm agrees with Status on every member, follows a leadership
// transfer (waking Changes subscribers), and reports no leader once the node
// has stopped.
func TestLeaderTermFollowsStatus(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	lead := c.waitLeader()
	c.settle()
	for _, id := range c.ids {
		st := c.nodes[id].Status()
		if l, term := c.nodes[id].LeaderTerm(); l != st.Leader || term != st.Term || l != lead {
			t.Errorf("node %d: LeaderTerm = (%d, %d), want (%d, %d) as Status and leader %d", id, l, term, st.Leader, st.Term, lead)
		}
	}

	to := c.others(lead)[0]
	n := c.nodes[to]
	changes := n.Changes()
	_, before := n.LeaderTerm()
	transferred := async(func() error { return c.nodes[lead].TransferLeadership(context.Background(), to) })
	if err := c.await("leadership transfer", 10, transferred); err != nil {
		t.Fatalf("TransferLeadership: %v", err)
	}
	c.waitFor("new leader known", 10, func() bool { l, _ := n.LeaderTerm(); return l == to })
	select {
	case <-changes:
	default:
		t.Error("Changes channel not closed after the leader changed")
	}
	if _, term := n.LeaderTerm(); term <= before {
		t.Errorf("term after transfer = %d, want above %d", term, before)
	}

	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if l, term := n.LeaderTerm(); l != 0 || term == 0 {
		t.Errorf("LeaderTerm after Close = (%d, %d), want no leader and the last term", l, term)
	}
}
