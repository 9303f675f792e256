package raftadapter_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/meshkv/meshkv/raftadapter"
	"github.com/meshkv/meshkv/raftadapter/raftadaptertest"
)

func TestProposeThroughAnyNode(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d nodes", size), func(t *testing.T) {
			c := newCluster(t, size, raftadaptertest.NetworkConfig{}, nil)
			c.waitLeader()
			for round := range 3 {
				for _, id := range c.ids {
					key := fmt.Sprintf("k%d-%d", id, round)
					res := c.put(id, key, strconv.Itoa(round))
					// The result comes from the proposer's own state machine.
					if v, _ := c.kvs[id].Get(key); v != strconv.Itoa(round) {
						t.Fatalf("node %d: kv[%s] = %q when Propose returned (index %d)", id, key, v, res.Index)
					}
				}
			}
			c.waitFor("all nodes converge", 3, func() bool { return c.converged(c.ids...) })
			if got, want := c.kvs[c.ids[0]].Len(), 3*size; got != want {
				t.Fatalf("keys = %d, want %d", got, want)
			}
			for _, id := range c.ids {
				if m := c.nodes[id].Status().Metrics; m.ProposalsLost != 0 || m.PendingProposals != 0 {
					t.Errorf("node %d: lost %d, pending %d proposals; want 0", id, m.ProposalsLost, m.PendingProposals)
				}
			}
		})
	}
}

func TestLinearizableReadsThroughAnyNode(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d nodes", size), func(t *testing.T) {
			c := newCluster(t, size, raftadaptertest.NetworkConfig{}, nil)
			c.waitLeader()
			ctx := context.Background()
			for i := range 4 * size {
				writer, reader := c.ids[i%size], c.ids[(i+1+i/size)%size]
				c.put(writer, "k", strconv.Itoa(i))
				// Acknowledged before the read started, so the read must see it.
				if err := c.nodes[reader].ReadIndex(ctx); err != nil {
					t.Fatalf("ReadIndex via %d: %v", reader, err)
				}
				if v, _ := c.kvs[reader].Get("k"); v != strconv.Itoa(i) {
					t.Fatalf("read via %d after write %d via %d saw %q", reader, i, writer, v)
				}
			}
		})
	}
}

func TestReadIndexBatching(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	lead := c.waitLeader()
	f := c.others(lead)[0]
	c.put(lead, "k", "v")
	n := c.nodes[f]
	base := n.Status().Metrics

	// The follower's read requests to the leader are lost, so its first
	// round stays in flight while more reads arrive.
	c.net.Cut(f, lead)
	const reads = 20
	results := make(chan error, reads)
	read := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		results <- n.ReadIndex(ctx)
	}
	go read()
	eventually(t, 10*time.Second, "first round started", func() bool { return n.Status().Metrics.ReadRounds == base.ReadRounds+1 })
	for range reads - 1 {
		go read()
	}
	eventually(t, 10*time.Second, "all reads queued", func() bool {
		return n.Status().Metrics.ReadRequests == base.ReadRequests+reads
	})
	c.settle()
	if got := n.Status().Metrics.ReadRounds; got != base.ReadRounds+1 {
		t.Fatalf("read rounds while one is in flight = %d, want %d", got-base.ReadRounds, 1)
	}
	c.net.Uncut(f, lead)
	// After an election timeout without an answer the follower asks again,
	// once, for all waiting reads.
	got := 0
	c.waitFor("reads answered", 25, func() bool {
		for {
			select {
			case err := <-results:
				if err != nil {
					t.Fatalf("ReadIndex: %v", err)
				}
				got++
			default:
				return got == reads
			}
		}
	})
	m := n.Status().Metrics
	if rounds := m.ReadRounds - base.ReadRounds; rounds > 3 {
		t.Errorf("%d reads took %d rounds, want them batched into at most 3", reads, rounds)
	}
	if m.PendingReads != 0 {
		t.Errorf("PendingReads = %d, want 0", m.PendingReads)
	}
	if c.leaderAmong(c.ids...) != lead {
		t.Errorf("leader changed during the test")
	}
}

func TestLeaderFailover(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d nodes", size), func(t *testing.T) {
			c := newCluster(t, size, raftadaptertest.NetworkConfig{}, nil)
			old := c.waitLeader()
			c.put(old, "before", "1")
			c.net.Isolate(old)
			rest := c.others(old)
			lead := c.waitLeader(rest...)
			if lead == old {
				t.Fatalf("isolated node %d still leads", old)
			}
			for _, id := range rest {
				c.put(id, "after-"+strconv.Itoa(int(id)), "1")
			}
			c.net.Rejoin(old)
			c.waitFor("old leader rejoins and catches up", 50, func() bool {
				return c.nodes[old].Status().Leader == lead && c.converged(c.ids...)
			})
			for _, id := range rest {
				// The first leader, then the one elected in its place.
				if got := c.nodes[id].Status().Metrics.LeaderChanges; got < 2 {
					t.Errorf("node %d saw %d leader changes, want at least 2", id, got)
				}
			}
			if got := c.kvs[old].Len(); got != 1+len(rest) {
				t.Fatalf("old leader has %d keys, want %d", got, 1+len(rest))
			}
		})
	}
}

func TestIsolatedLeaderNeverAcknowledges(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	old := c.waitLeader()
	c.put(old, "k", "before")
	n := c.nodes[old]
	c.net.Isolate(old)

	propDone := async(func() error {
		_, err := n.Propose(context.Background(), raftadaptertest.Put("k", "lost"))
		return err
	})
	readCtx, cancelRead := context.WithCancel(context.Background())
	defer cancelRead()
	readDone := async(func() error { return n.ReadIndex(readCtx) })
	eventually(t, 10*time.Second, "requests reach the isolated leader", func() bool {
		m := n.Status().Metrics
		return m.PendingProposals == 1 && m.ReadRequests >= 1
	})

	rest := c.others(old)
	var lead uint64
	c.waitFor("old leader steps down and the rest elect a leader", 100, func() bool {
		lead = c.leaderAmong(rest...)
		return lead != 0 && !n.Status().IsLeader
	})
	if st := n.Status(); st.State == raft.StateLeader {
		t.Fatalf("isolated node still in state %v", st.State)
	}
	c.put(lead, "k", "after")
	for range 30 { // much longer than an election timeout
		c.tickAll()
	}
	c.settle()
	assertPending(t, propDone, "Propose on isolated old leader")
	assertPending(t, readDone, "ReadIndex on isolated old leader")
	cancelRead()
	if err := result(t, readDone, "ReadIndex"); err == nil {
		t.Fatal("ReadIndex on an isolated node succeeded")
	}

	c.net.Rejoin(old)
	if err := c.await("old leader's proposal", 50, propDone); !errors.Is(err, raftadapter.ErrLeaderChanged) {
		t.Fatalf("Propose on deposed leader: err = %v, want ErrLeaderChanged", err)
	}
	c.waitFor("converged", 20, func() bool { return c.converged(c.ids...) })
	for _, id := range c.ids {
		if v, _ := c.kvs[id].Get("k"); v != "after" {
			t.Errorf("node %d: k = %q, want after", id, v)
		}
	}
	if m := n.Status().Metrics; m.ProposalsLost != 1 || m.PendingProposals != 0 || m.Reproposed != 0 {
		t.Errorf("old leader: lost %d pending %d reproposed %d, want 1, 0 and 0 (its entry was in its own log)",
			m.ProposalsLost, m.PendingProposals, m.Reproposed)
	}
}

// A follower that has not noticed a new term forwards a proposal to a leader
// that has since been re-elected in a later term. The entry is appended in
// the later term, so every member skips it and the proposer learns that it
// was lost instead of waiting for its deadline.
func TestStaleTermProposalIsSkippedEverywhere(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	lead := c.waitLeader()
	rest := c.others(lead)
	stale, other := rest[0], rest[1]
	c.put(stale, "k", "1")
	term := c.nodes[stale].Status().Term

	// The stale follower hears nothing from now on, but can still send.
	c.net.Cut(lead, stale)
	c.net.Cut(other, stale)
	ctx := context.Background()
	if err := c.nodes[lead].TransferLeadership(ctx, other); err != nil {
		t.Fatalf("transfer to %d: %v", other, err)
	}
	if err := c.nodes[other].TransferLeadership(ctx, lead); err != nil {
		t.Fatalf("transfer back to %d: %v", lead, err)
	}
	if st := c.nodes[stale].Status(); st.Leader != lead || st.Term != term {
		t.Fatalf("stale follower sees leader %d term %d, want %d and %d", st.Leader, st.Term, lead, term)
	}
	if got := c.nodes[lead].Status().Term; got <= term {
		t.Fatalf("leader term %d, want > %d", got, term)
	}

	done := async(func() error {
		_, err := c.nodes[stale].Propose(ctx, raftadaptertest.Put("k", "stale"))
		return err
	})
	eventually(t, 10*time.Second, "forwarded proposal appended", func() bool {
		return c.nodes[lead].Status().CommitIndex > c.nodes[stale].Status().CommitIndex+2
	})
	c.put(lead, "k", "2")
	c.net.Uncut(lead, stale)
	c.net.Uncut(other, stale)
	if err := c.await("stale proposal", 20, done); !errors.Is(err, raftadapter.ErrLeaderChanged) {
		t.Fatalf("stale proposal: err = %v, want ErrLeaderChanged", err)
	}
	c.waitFor("converged", 20, func() bool { return c.converged(c.ids...) })
	for _, id := range c.ids {
		if v, _ := c.kvs[id].Get("k"); v != "2" {
			t.Errorf("node %d: k = %q, want 2 (the stale entry must be skipped)", id, v)
		}
	}
}

func TestTransferLeadership(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	lead := c.waitLeader()
	rest := c.others(lead)
	target := rest[1]
	ctx := context.Background()

	if err := c.nodes[rest[0]].TransferLeadership(ctx, target); !errors.Is(err, raftadapter.ErrNotLeader) {
		t.Errorf("transfer from follower: err = %v, want ErrNotLeader", err)
	}
	if err := c.nodes[lead].TransferLeadership(ctx, 99); !errors.Is(err, raftadapter.ErrUnknownMember) {
		t.Errorf("transfer to non-member: err = %v, want ErrUnknownMember", err)
	}
	if err := c.nodes[rest[0]].TransferLeadership(ctx, lead); err != nil {
		t.Errorf("transfer to the current leader: %v", err)
	}

	c.put(lead, "a", "1")
	done := async(func() error { return c.nodes[lead].TransferLeadership(ctx, target) })
	if err := c.await("transfer", 5, done); err != nil {
		t.Fatalf("TransferLeadership: %v", err)
	}
	if !c.nodes[target].Status().IsLeader {
		t.Fatalf("node %d is not leader after the transfer", target)
	}
	c.waitFor("everyone follows the new leader", 3, func() bool { return c.leaderAmong(c.ids...) == target })
	c.put(lead, "b", "1")
}

// A–C are cut apart but both reach B: the cluster keeps committing and the
// leader keeps its term whether the leader is in the middle or at an edge.
func TestNonTransitiveCut(t *testing.T) {
	for _, leaderInMiddle := range []bool{true, false} {
		t.Run(fmt.Sprintf("leader in middle %v", leaderInMiddle), func(t *testing.T) {
			c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
			lead := c.waitLeader()
			rest := c.others(lead)
			var a, b, cc uint64 // cut a–cc; b reaches both
			if leaderInMiddle {
				a, b, cc = rest[0], lead, rest[1]
			} else {
				a, b, cc = lead, rest[0], rest[1]
			}
			term := c.nodes[lead].Status().Term
			c.net.Disconnect(a, cc)
			for i := range 15 {
				c.put(lead, "l"+strconv.Itoa(i), "1")
				c.put(b, "b"+strconv.Itoa(i), "1")
				for range 3 {
					c.tickAll()
				}
			}
			c.settle()
			for _, id := range c.ids {
				st := c.nodes[id].Status()
				if st.Term != term {
					t.Errorf("node %d: term %d, want %d (no disruption)", id, st.Term, term)
				}
			}
			if !c.nodes[lead].Status().IsLeader {
				t.Fatalf("leader %d lost leadership", lead)
			}
			c.net.Connect(a, cc)
			c.waitFor("converged after healing", 20, func() bool { return c.converged(c.ids...) })
		})
	}
}

// TestDelayAndReorder: writes through every member and reads through
// another stay correct while messages are delayed and reordered. Raft can
// need a heartbeat to recover from a reordered append (a follower's
// rejection pauses the leader's sends until the next heartbeat), so time
// runs on the real ticker, with an election timeout long enough that the
// delays never cause an election.
func TestDelayAndReorder(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{Seed: 7, MaxDelay: 2 * time.Millisecond}, func(cfg *raftadapter.Config) {
		cfg.DisableTicker = false
		cfg.TickInterval = 10 * time.Millisecond
		cfg.ElectionTicks = 100
	})
	eventually(t, 30*time.Second, "leader", func() bool { return c.leaderAmong(c.ids...) != 0 })
	for i := range 30 {
		id := c.ids[i%3]
		c.put(id, "k"+strconv.Itoa(i%7), strconv.Itoa(i))
		if err := c.nodes[c.ids[(i+1)%3]].ReadIndex(context.Background()); err != nil {
			t.Fatalf("ReadIndex: %v", err)
		}
	}
	c.waitFor("converged", 10, func() bool { return c.converged(c.ids...) })
}

// TestRandomDrops runs the real ticker over a lossy network and checks that
// every acknowledged write survives and all members converge.
func TestRandomDrops(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{Seed: 42, DropRate: 0.1}, func(cfg *raftadapter.Config) {
		cfg.DisableTicker = false
		cfg.TickInterval = 10 * time.Millisecond
		cfg.ElectionTicks = 15
	})
	eventually(t, 30*time.Second, "leader", func() bool { return c.leaderAmong(c.ids...) != 0 })

	acked := make(map[string]string)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := range 15 {
				key := fmt.Sprintf("w%d-%d", w, i)
				id := c.ids[(w+i)%3]
				for attempt := 0; ; attempt++ {
					if attempt == 50 {
						t.Errorf("%s: no success after %d attempts", key, attempt)
						return
					}
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					_, err := c.nodes[id].Propose(ctx, raftadaptertest.Put(key, "v"))
					cancel()
					if err == nil {
						mu.Lock()
						acked[key] = "v"
						mu.Unlock()
						break
					}
					if errors.Is(err, raftadapter.ErrNoLeader) {
						time.Sleep(5 * time.Millisecond) // wait out the election
					}
					id = c.ids[(int(id)+attempt)%3]
				}
				// A read through another member sees the write.
				reader := c.ids[(w+i+1)%3]
				for attempt := 0; ; attempt++ {
					if attempt == 50 {
						t.Errorf("read via %d: no success after %d attempts", reader, attempt)
						return
					}
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					err := c.nodes[reader].ReadIndex(ctx)
					cancel()
					if err == nil {
						break
					}
				}
				if v, _ := c.kvs[reader].Get(key); v != "v" {
					t.Errorf("read via %d missed acknowledged %s", reader, key)
				}
			}
		})
	}
	wg.Wait()
	c.net.SetDropRate(0)
	eventually(t, 30*time.Second, "converged", func() bool { return c.converged(c.ids...) })
	for k := range acked {
		for _, id := range c.ids {
			if v, _ := c.kvs[id].Get(k); v != "v" {
				t.Errorf("node %d lost acknowledged %s", id, k)
			}
		}
	}
	st := c.net.Stats()
	t.Logf("network: %+v", st)
	if st.Dropped == 0 {
		t.Error("no message was dropped")
	}
}
