package raftadapter_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/raftadapter"
	"github.com/meshkv/meshkv/raftadapter/raftadaptertest"
)

const electionTicks = 10 // newCluster's ElectionTicks, a bound on the default ReproposeTicks

// interceptProps applies act to the first n proposals node from forwards,
// and lets everything else through.
func interceptProps(c *cluster, from uint64, n int32, act raftadaptertest.Action) *atomic.Int32 {
	var hit atomic.Int32
	c.net.Intercept(func(sender uint64, m *raftpb.Message) raftadaptertest.Action {
		if sender == from && m.GetType() == raftpb.MsgProp && hit.Load() < n {
			hit.Add(1)
			return act
		}
		return raftadaptertest.Deliver
	})
	return &hit
}

// proposeAsync proposes key=value through node id in the background.
func proposeAsync(c *cluster, id uint64, key, value string) (<-chan error, *raftadaptertest.PutResult) {
	var res raftadaptertest.PutResult
	return async(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		v, err := c.nodes[id].Propose(ctx, raftadaptertest.Put(key, value))
		if err != nil {
			return err
		}
		r, ok := v.(raftadaptertest.PutResult)
		if !ok {
			return fmt.Errorf("result %T %v, want PutResult", v, v)
		}
		res = r
		return nil
	}), &res
}

// writtenOnce checks that every node applied each key exactly once.
func writtenOnce(t *testing.T, c *cluster, keys ...string) {
	t.Helper()
	for _, id := range c.ids {
		for _, k := range keys {
			if got := c.kvs[id].Writes(k); got != 1 {
				t.Errorf("node %d applied %s %d times, want once", id, k, got)
			}
		}
	}
}

// (a) A follower's forwarded proposal is lost: the follower proposes it
// again after ReproposeTicks, and the caller gets its result well before
// two election timeouts instead of waiting for its deadline.
func TestLostForwardedProposalIsReproposed(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	lead := c.waitLeader()
	f := c.others(lead)[0]
	dropped := interceptProps(c, f, 1, raftadaptertest.Drop)

	done, res := proposeAsync(c, f, "k", "v")
	eventually(t, 10*time.Second, "proposal forwarded", func() bool { return dropped.Load() == 1 })
	if err := c.await("lost proposal", 2*electionTicks, done); err != nil {
		t.Fatalf("Propose via follower %d: %v", f, err)
	}
	if v, _ := c.kvs[f].Get("k"); v != "v" || res.Index == 0 {
		t.Fatalf("follower kv[k] = %q, result %+v", v, res)
	}
	c.waitFor("converged", 3, func() bool { return c.converged(c.ids...) })
	writtenOnce(t, c, "k")
	if m := c.nodes[f].Status().Metrics; m.Reproposed != 1 || m.ProposalsLost != 0 || m.PendingProposals != 0 {
		t.Errorf("follower metrics: reproposed %d lost %d pending %d, want 1, 0, 0", m.Reproposed, m.ProposalsLost, m.PendingProposals)
	}
	if got := c.nodes[lead].Status().Metrics.Reproposed; got != 0 {
		t.Errorf("leader re-proposed %d entries, want 0", got)
	}
	for _, id := range c.ids {
		if m := c.nodes[id].Status().Metrics; m.DuplicatesSkipped != 0 {
			t.Errorf("node %d skipped %d duplicates, want 0", id, m.DuplicatesSkipped)
		}
	}
	// Nothing else is re-proposed once it is applied.
	for range 3 * electionTicks {
		c.tickAll()
	}
	c.settle()
	if got := c.nodes[f].Status().Metrics.Reproposed; got != 1 {
		t.Errorf("reproposed %d after more ticks, want 1", got)
	}
}

// A forwarded proposal that reached the follower's own log in its term is
// in the leader's log too: it is never proposed again, even while it cannot
// commit for several election timeouts.
func TestAppendedProposalIsNotReproposed(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	lead := c.waitLeader()
	rest := c.others(lead)
	f, m := rest[0], rest[1]
	c.net.Isolate(m)
	// The follower's proposal reaches the leader, and the leader's appends
	// reach the follower, but none of the follower's answers get through:
	// the entry cannot commit.
	c.net.Intercept(func(from uint64, msg *raftpb.Message) raftadaptertest.Action {
		if from == f && msg.GetTo() == lead && msg.GetType() != raftpb.MsgProp {
			return raftadaptertest.Drop
		}
		return raftadaptertest.Deliver
	})
	done, _ := proposeAsync(c, f, "k", "v")
	eventually(t, 10*time.Second, "proposal pending", func() bool {
		return c.nodes[f].Status().Metrics.PendingProposals == 1
	})
	for range 3 * electionTicks {
		c.settle()
		c.tickAll()
	}
	c.settle()
	assertPending(t, done, "Propose without a quorum")
	if got := c.nodes[f].Status().Metrics.Reproposed; got != 0 {
		t.Fatalf("follower re-proposed %d times an entry already in its log", got)
	}

	c.net.Intercept(nil)
	c.net.Rejoin(m)
	err := c.await("proposal after healing", 100, done)
	if err != nil && !errors.Is(err, raftadapter.ErrLeaderChanged) {
		t.Fatalf("Propose: err = %v, want success or ErrLeaderChanged", err)
	}
	c.waitLeader()
	c.waitFor("converged", 10, func() bool { return c.converged(c.ids...) })
	want := uint64(0)
	if err == nil {
		want = 1
	}
	for _, id := range c.ids {
		if got := c.kvs[id].Writes("k"); got != want {
			t.Errorf("node %d applied k %d times, want %d (Propose returned %v)", id, got, want, err)
		}
	}
}

// (b) The original forwarded proposals are only slow: they arrive after
// their re-proposals were committed. Every member applies each proposal
// once, whether the late copies are recognised by the applied set or, after
// a newer write from the proposer, by its floor.
func TestLateOriginalIsSkippedEverywhere(t *testing.T) {
	for _, newerWrite := range []bool{false, true} {
		t.Run(fmt.Sprintf("newer write first %v", newerWrite), func(t *testing.T) {
			c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
			lead := c.waitLeader()
			f := c.others(lead)[0]
			var holding atomic.Bool
			holding.Store(true)
			c.net.Intercept(func(from uint64, m *raftpb.Message) raftadaptertest.Action {
				if from == f && m.GetType() == raftpb.MsgProp && holding.Load() {
					return raftadaptertest.Hold
				}
				return raftadaptertest.Deliver
			})

			const n = 5
			var keys []string
			var dones []<-chan error
			for i := range n {
				keys = append(keys, "k"+strconv.Itoa(i))
				done, _ := proposeAsync(c, f, keys[i], "v")
				dones = append(dones, done)
			}
			eventually(t, 10*time.Second, "proposals forwarded and held", func() bool {
				st := c.net.Stats()
				return c.nodes[f].Status().Metrics.PendingProposals == n && st.Held > 0
			})
			holding.Store(false)
			for i, done := range dones {
				if err := c.await("re-proposed "+keys[i], 2*electionTicks, done); err != nil {
					t.Fatalf("Propose %s: %v", keys[i], err)
				}
			}
			if m := c.nodes[f].Status().Metrics; m.Reproposed != n {
				t.Fatalf("reproposed %d, want %d (one batch of all pending)", m.Reproposed, n)
			}
			if newerWrite {
				c.put(f, "newer", "1")
				keys = append(keys, "newer")
			}
			if got := c.net.Release(); got == 0 {
				t.Fatal("no held original to release")
			}
			c.waitFor("late originals committed and skipped", 3, func() bool {
				for _, id := range c.ids {
					if c.nodes[id].Status().Metrics.DuplicatesSkipped != n {
						return false
					}
				}
				return c.converged(c.ids...)
			})
			writtenOnce(t, c, keys...)
			term := c.nodes[lead].Status().Term
			for _, id := range c.ids {
				if st := c.nodes[id].Status(); st.Term != term || st.Metrics.PendingProposals != 0 {
					t.Errorf("node %d: term %d pending %d, want term %d and nothing pending", id, st.Term, st.Metrics.PendingProposals, term)
				}
			}
			// The proposer keeps working, and all members agree.
			c.put(f, "after", "1")
			c.put(lead, "after2", "1")
			c.waitFor("converged", 3, func() bool { return c.converged(c.ids...) })
			writtenOnce(t, c, "after", "after2")
		})
	}
}

// (c) A member that restores a snapshot taken between the two copies of a
// proposal skips the second copy too: the at-most-once state travels in the
// snapshot.
func TestRestoredMemberSkipsDuplicate(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, func(cfg *raftadapter.Config) {
		cfg.SnapshotCount = 10
		cfg.SnapshotCatchUpEntries = 1
	})
	lead := c.waitLeader()
	rest := c.others(lead)
	f, m := rest[0], rest[1]
	c.net.Isolate(m)
	held := interceptProps(c, f, 1, raftadaptertest.Hold)

	done, res := proposeAsync(c, f, "dup", "1")
	eventually(t, 10*time.Second, "proposal held", func() bool { return held.Load() == 1 })
	if err := c.await("re-proposal", 2*electionTicks, done); err != nil {
		t.Fatalf("Propose via %d: %v", f, err)
	}
	first := res.Index

	// The leader snapshots past the first copy and compacts its log, so the
	// isolated member can only catch up from that snapshot.
	var snapIndex uint64
	for i := 0; snapIndex <= first+1; i++ {
		if i == 50 {
			t.Fatalf("leader snapshot index %d after %d writes, want > %d", snapIndex, i, first+1)
		}
		c.put(lead, "fill"+strconv.Itoa(i), "x")
		c.settle()
		snapIndex = c.nodes[lead].Status().SnapshotIndex
	}

	// The second copy lands after the snapshot.
	if got := c.net.Release(); got != 1 {
		t.Fatalf("released %d messages, want 1", got)
	}
	c.waitFor("late copy skipped", 3, func() bool {
		return c.nodes[lead].Status().Metrics.DuplicatesSkipped == 1 && c.nodes[f].Status().Metrics.DuplicatesSkipped == 1
	})
	if got := c.nodes[lead].Status().SnapshotIndex; got != snapIndex {
		t.Fatalf("leader took another snapshot (index %d, was %d); it would include the second copy", got, snapIndex)
	}

	c.net.Rejoin(m)
	c.waitFor("isolated member catches up", 50, func() bool {
		return c.converged(c.ids...) && c.nodes[m].Status().AppliedIndex == c.nodes[lead].Status().AppliedIndex
	})
	if got := c.kvs[m].Restores(); got != 1 {
		t.Fatalf("member %d restored %d snapshots, want 1", m, got)
	}
	if got := c.nodes[m].Status().Metrics.DuplicatesSkipped; got != 1 {
		t.Fatalf("member %d skipped %d duplicates, want 1 (the copy after its snapshot)", m, got)
	}
	writtenOnce(t, c, "dup")
}

// Proposals from every member race with a lossy, reordering network and
// frequent re-proposals; no command may be applied twice anywhere, and
// every acknowledged one is applied everywhere.
func TestReproposalUnderLossAndReorder(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{Seed: 11, MaxDelay: 3 * time.Millisecond}, func(cfg *raftadapter.Config) {
		cfg.DisableTicker = false
		cfg.TickInterval = 2 * time.Millisecond
		cfg.ElectionTicks = 50
		cfg.ReproposeTicks = 2 // often shorter than the network's delay: many duplicates
	})
	eventually(t, 30*time.Second, "leader", func() bool { return c.leaderAmong(c.ids...) != 0 })
	var props atomic.Uint64
	c.net.Intercept(func(_ uint64, m *raftpb.Message) raftadaptertest.Action {
		if m.GetType() == raftpb.MsgProp && props.Add(1)%3 == 0 {
			return raftadaptertest.Drop
		}
		return raftadaptertest.Deliver
	})

	var (
		mu    sync.Mutex
		acked []string
		keys  []string
		wg    sync.WaitGroup
	)
	for _, id := range c.ids {
		for w := range 3 {
			wg.Go(func() {
				for i := range 10 {
					key := fmt.Sprintf("n%d-w%d-%d", id, w, i)
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := c.nodes[id].Propose(ctx, raftadaptertest.Put(key, "v"))
					cancel()
					mu.Lock()
					keys = append(keys, key)
					if err == nil {
						acked = append(acked, key)
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	c.net.Intercept(nil)
	c.put(c.ids[0], "last", "1")
	eventually(t, 30*time.Second, "converged", func() bool {
		applied := c.nodes[c.ids[0]].Status().AppliedIndex
		for _, id := range c.ids {
			if c.nodes[id].Status().AppliedIndex != applied {
				return false
			}
		}
		return c.converged(c.ids...)
	})
	var reproposed, skipped uint64
	for _, id := range c.ids {
		m := c.nodes[id].Status().Metrics
		reproposed += m.Reproposed
		skipped = max(skipped, m.DuplicatesSkipped)
		for _, k := range keys {
			if got := c.kvs[id].Writes(k); got > 1 {
				t.Errorf("node %d applied %s %d times", id, k, got)
			}
		}
		for _, k := range acked {
			if got := c.kvs[id].Writes(k); got != 1 {
				t.Errorf("node %d applied acknowledged %s %d times, want once", id, k, got)
			}
		}
	}
	t.Logf("%d of %d acknowledged; %d re-proposals; %d duplicates skipped", len(acked), len(keys), reproposed, skipped)
	if reproposed == 0 {
		t.Error("nothing was re-proposed")
	}
	if len(acked) < len(keys)*9/10 {
		t.Errorf("only %d of %d proposals acknowledged", len(acked), len(keys))
	}
}
