package meshkv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/bootstrap"
	"github.com/meshkv/meshkv/internal/ids"
	"github.com/meshkv/meshkv/internal/membership"
	"github.com/meshkv/meshkv/meshtransport"
	"github.com/meshkv/meshkv/raftadapter"
)

// Faults on the in-memory network (see membership_mem_test.go).

// The founder of three nodes crashes (is cut off from everyone, as a crash
// looks to the others) at the moment it would form, after every other node
// promised its ballot; a new process at its address and the two others
// form exactly one cluster of three voters.
func TestFounderCrashDuringBootstrap(t *testing.T) {
	mc := newMemCluster(t, 4)
	errCrash := errors.New("founder crashed")
	crashed := make(chan uint64, 1)
	var once atomic.Bool // one founder crashes
	type result struct {
		i   int
		n   *Node
		err error
	}
	results := make(chan result, 4)
	launch := func(cfg Config, i int) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), memWaitDefault)
			defer cancel()
			n, err := Start(ctx, cfg)
			results <- result{i, n, err}
		}()
	}
	for i := range 3 {
		cfg := mc.config(i, 3, []int{(i + 1) % 3, (i + 2) % 3})
		cfg.test.beforeRaft = func(n *Node, members []ids.MemberID) error {
			if len(members) > 0 && ids.MemberID(n.id) == slices.Min(members) && once.CompareAndSwap(false, true) {
				mc.net.Isolate(n.mesh)
				crashed <- n.id
				return errCrash
			}
			return nil
		}
		launch(cfg, i)
	}
	// The founder's Start fails (its process is gone); a new process (a
	// new id) takes its address, as a supervisor would restart it.
	var want []*Node
	var repl *Node
	for len(want) < 3 {
		r := <-results
		switch {
		case r.err != nil && errors.Is(r.err, errCrash):
			t.Logf("founder %x (slot %d) crashed before forming", <-crashed, r.i)
			launch(mc.config(r.i, 3, []int{(r.i + 1) % 3, (r.i + 2) % 3}), 3+r.i)
			continue
		case r.err != nil:
			t.Fatalf("node %d: %v", r.i, r.err)
		case r.i >= 3:
			repl = r.n
		}
		want = append(want, r.n)
		mc.mu.Lock()
		mc.nodes[r.i] = r.n
		mc.mu.Unlock()
	}
	if repl == nil {
		t.Fatal("no founder crashed: the test did not test a founder's crash")
	}
	mc.waitVoters(memWaitDefault, want...)
	for _, n := range want {
		if n.ClusterID() != repl.ClusterID() {
			t.Fatalf("two clusters: %x and %x", n.ClusterID(), repl.ClusterID())
		}
	}
	mc.put(repl, "formed")
	mc.checkNoEven()
}

// A node with the cluster's password claims, in its own entry and in direct
// messages, to be a voter and the leader of the cluster at a huge term, with
// a member list of its own, the founder of a successor cluster, and a member
// that removed everyone; no member stops and nobody is removed.
func TestForgedClaimsStopAndRemoveNobody(t *testing.T) {
	mc := newMemCluster(t, 5)
	nodes := []*Node{mc.start(0, 1), mc.start(1, 1, 0), mc.start(2, 1, 0)}
	mc.waitVoters(memWaitDefault, nodes...)
	voters, _, _ := mc.agreed()
	cluster := ids.ClusterID(nodes[0].ClusterID())

	rogue, err := meshtransport.New(meshtransport.Config{
		ListenAddr: memAddr(9), Peers: []string{memAddr(0), memAddr(1), memAddr(2)},
		Password: []byte("secret"), ClusterName: mc.name, Fabric: mc.net.Fabric(),
		EntryTTL: memEntryTTL, RefreshInterval: memRefresh,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rogue.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rogue.Close() })
	rogue.SetClusterID(cluster)
	// Its entry also carries what entries once did: a leader flag, a huge
	// term and a member list without the real members.
	app, _ := json.Marshal(struct {
		Boot    bootstrap.State `json:"b"`
		Term    uint64          `json:"t"`
		Leader  bool            `json:"l"`
		Members []uint64        `json:"m"`
	}{bootstrap.State{RaftID: rogue.RaftID(), ClusterID: cluster + 1, Supersedes: cluster}, 1 << 40, true, []uint64{uint64(rogue.RaftID())}})
	rogue.SetMeta(meshtransport.Meta{ClusterID: uint64(cluster), Role: "voter", App: app})

	claim := func() {
		for _, n := range nodes {
			to := meshtransport.MemberID(n.id)
			_ = rogue.SendMember(to, meshtransport.MemberMessage{Kind: meshtransport.RemovalNotice, Term: 1 << 40, Index: 1 << 40})
			_ = rogue.SendMember(to, meshtransport.MemberMessage{Kind: meshtransport.MemberReply, Status: meshtransport.StatusRemoved,
				Term: 1 << 40, Leader: rogue.RaftID()})
		}
	}
	hold := memDeadMember + 3*memElection + 2*time.Second
	always(t, hold, "members keep serving with the same voters", func() bool {
		claim()
		for _, n := range nodes {
			if n.Err() != nil {
				t.Fatalf("member %x stopped: %v", n.id, n.Err())
			}
			st := n.raft.Load().Status()
			if !slices.Equal(st.Voters, voters) || slices.Contains(st.Learners, uint64(rogue.RaftID())) {
				t.Fatalf("member %x has voters %x learners %x, want voters %x", n.id, st.Voters, st.Learners, voters)
			}
		}
		return true
	})
	mc.put(nodes[2], "still serving")
}

// panicSM panics when it applies a payload holding the marker.
type panicSM struct {
	raftadapter.StateMachine
	marker []byte
}

func (p panicSM) Apply(index uint64, data []byte) any {
	if bytes.Contains(data, p.marker) {
		panic("injected apply failure")
	}
	return p.StateMachine.Apply(index, data)
}

// A raft loop failure ends the node: Done is closed and Err says why.
func TestRaftFailureEndsNode(t *testing.T) {
	marker := []byte("apply-panics-here")
	n, err := Start(t.Context(), Config{Logger: memLogger(t, "lone"), test: &testHooks{
		stateMachine: func(sm raftadapter.StateMachine) raftadapter.StateMachine { return panicSM{sm, marker} },
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, _ = n.Client().Put(ctx, string(marker), "v") // the apply fails
	select {
	case <-n.Done():
	case <-time.After(memWaitDefault):
		t.Fatal("node still running after its raft loop failed")
	}
	if err := n.Err(); !errors.Is(err, ErrRaftFailed) {
		t.Fatalf("Err() = %v, want ErrRaftFailed", err)
	}
}

// After two of three voters die for good, the survivor recovers the
// cluster with its data as a new single-voter cluster, which new nodes then
// grow back to three voters. Recovery is refused while a leader exists.
func TestRecoverAfterLostQuorum(t *testing.T) {
	mc := newMemCluster(t, 6)
	a := mc.start(0, 1)
	mc.start(1, 1, 0)
	mc.start(2, 1, 0)
	mc.waitVoters(memWaitDefault, mc.live()...)
	mc.put(a, "before")
	if _, err := a.Recover(t.Context(), false); !errors.Is(err, ErrRecoveryRefused) || !errors.Is(err, membership.ErrLeaderKnown) {
		t.Fatalf("recover with a leader: %v, want ErrLeaderKnown", err)
	}
	old := a.ClusterID()
	mc.kill(1)
	mc.kill(2)
	var rec Recovery
	eventually(t, memWaitDefault, "recovery accepted", func() bool {
		var err error
		rec, err = a.Recover(t.Context(), false)
		if err != nil && !errors.Is(err, membership.ErrTooSoon) && !errors.Is(err, membership.ErrLeaderKnown) {
			t.Fatalf("recover: %v", err)
		}
		return err == nil
	})
	if rec.Supersedes != old || a.ClusterID() != rec.Cluster || len(rec.Removed) != 2 {
		t.Fatalf("recovery %+v, node cluster %x, old %x", rec, a.ClusterID(), old)
	}
	mc.put(a, "after")
	d := mc.start(3, 1, 0)
	e := mc.start(4, 1, 0)
	mc.waitVoters(memWaitDefault, a, d, e)
	for _, key := range []string{"before", "after"} {
		resp, err := e.Client().Get(t.Context(), key)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("get %s on a new member: %v %v", key, resp, err)
		}
	}
	if a.Err() != nil {
		t.Fatalf("recovered member stopped: %v", a.Err())
	}
	mc.checkNoEven()
}

// member list shows every member's mesh address as its peer URL.
func TestMemberListPeerURLs(t *testing.T) {
	mc := newMemCluster(t, 7)
	nodes := []*Node{mc.start(0, 1), mc.start(1, 1, 0), mc.start(2, 1, 0)}
	mc.waitVoters(memWaitDefault, nodes...)
	want := map[uint64]string{}
	for i, n := range nodes {
		want[n.id] = "https://" + memAddr(i)
	}
	eventually(t, memWaitDefault, "peer URLs of every member", func() bool {
		resp, err := nodes[1].Client().MemberList(t.Context())
		if err != nil || len(resp.Members) != 3 {
			return false
		}
		for _, m := range resp.Members {
			if len(m.PeerURLs) != 1 || m.PeerURLs[0] != want[m.ID] {
				return false
			}
		}
		return true
	})
}
