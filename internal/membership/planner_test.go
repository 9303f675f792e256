package membership

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
)

var testCfg = Config{DeadMemberTimeout: 5 * time.Second, ActiveWindow: time.Second, CatchUpFor: time.Second}

func wantOps(t *testing.T, d Decision, want map[OpType][]ids.MemberID) {
	t.Helper()
	got := ops(d.Change)
	if len(got) != len(want) {
		t.Fatalf("change = %q (%s), want %v; waiting %q", d.Change, d.Change.Reason, want, d.Waiting)
	}
	for typ, l := range want {
		if !slices.Equal(got[typ], l) {
			t.Fatalf("change = %q (%s), want %v; waiting %q", d.Change, d.Change.Reason, want, d.Waiting)
		}
	}
}

func wantNoChange(t *testing.T, d Decision) {
	t.Helper()
	if !d.Change.IsZero() || d.Exit != nil || d.TransferTo != 0 {
		t.Fatalf("decision = change %q (%s), exit %v, transfer %s; want none", d.Change, d.Change.Reason, d.Exit, d.TransferTo)
	}
}

// Growth never passes through an even voter count: one caught-up learner is
// not promoted into a 2-voter cluster; two are promoted together.
func TestGrowthSkipsEvenCounts(t *testing.T) {
	for _, tc := range []struct {
		name             string
		target           int
		voters, learners []ids.MemberID
		want             map[OpType][]ids.MemberID
	}{
		{"1 voter, 1 learner: stay", 3, mids(1), mids(2), nil},
		{"1 voter, 2 learners: 1 → 3", 3, mids(1), mids(2, 3), map[OpType][]ids.MemberID{OpPromote: mids(2, 3)}},
		{"1 voter, 4 learners, target 3: 1 → 3 only", 3, mids(1), mids(2, 3, 4, 5), map[OpType][]ids.MemberID{OpPromote: mids(2, 3)}},
		{"1 voter, 4 learners, target 5: 1 → 5", 5, mids(1), mids(2, 3, 4, 5), map[OpType][]ids.MemberID{OpPromote: mids(2, 3, 4, 5)}},
		{"3 voters, 1 learner, target 5: stay", 5, mids(1, 2, 3), mids(4), nil},
		{"3 voters, 2 learners, target 5: 3 → 5", 5, mids(1, 2, 3), mids(4, 5), map[OpType][]ids.MemberID{OpPromote: mids(4, 5)}},
		{"3 voters, 2 learners, target 3: stay", 3, mids(1, 2, 3), mids(4, 5), nil},
		{"target 1: never grow", 1, mids(1), mids(2, 3), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testCfg
			cfg.TargetVoters = tc.target
			f := newFx(t, cfg, tc.voters, tc.learners)
			d := f.until(10 * time.Second)
			if tc.want == nil {
				wantNoChange(t, d)
				return
			}
			wantOps(t, d, tc.want)
			if n := len(tc.voters) + len(tc.want[OpPromote]); n%2 == 0 {
				t.Fatalf("even voter count %d", n)
			}
		})
	}
}

// "Caught up" means acknowledged: a learner that acknowledged nothing is
// never promoted, however young the cluster; one that acknowledges the
// commit index is promoted only after CatchUpFor, and only while active.
func TestCaughtUpMeansAcknowledged(t *testing.T) {
	t.Run("never acknowledged, commit 1", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1), mids(2, 3))
		f.v.Raft.Commit = 1
		f.lag[2], f.lag[3] = 1, 1 // Match stays 0
		for range 100 {
			if d := f.step(); len(ops(d.Change)[OpPromote]) > 0 {
				t.Fatalf("promoted learners that acknowledged nothing: %s", d.Change)
			}
		}
	})
	t.Run("stable for CatchUpFor", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1), mids(2, 3))
		var first time.Duration
		for range 100 {
			if d := f.step(); !d.Change.IsZero() {
				first = f.now
				break
			}
		}
		// The ack target needs ActiveWindow of history, then CatchUpFor.
		if want := testCfg.ActiveWindow + testCfg.CatchUpFor; first < want || first > want+2*tick {
			t.Fatalf("promoted at %v, want about %v", first, want)
		}
	})
	t.Run("a blip restarts the period", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1), mids(2, 3))
		f.until(testCfg.ActiveWindow + testCfg.CatchUpFor/2)
		f.acks[3] = false
		f.lag[3] = 1000
		for range 15 {
			f.step()
		}
		f.acks[3], f.lag[3] = true, 0
		start := f.now
		d := f.until(5 * time.Second)
		if d.Change.IsZero() || f.now-start < testCfg.CatchUpFor {
			t.Fatalf("promoted %q %v after recovering; want ≥ %v", d.Change, f.now-start, testCfg.CatchUpFor)
		}
	})
	t.Run("steady writes, learner one round trip behind", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1), mids(2, 3))
		f.writes = true
		f.lag[2], f.lag[3] = 3, 2 // always behind the current commit index
		wantOps(t, f.until(10*time.Second), map[OpType][]ids.MemberID{OpPromote: mids(2, 3)})
	})
	t.Run("steady writes, learner falling behind", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1), mids(2, 3))
		f.writes = true
		f.lag[3] = 20 // 20 steps = 2s behind, more than ActiveWindow
		wantNoChange(t, f.until(10*time.Second))
	})
	t.Run("inactive learner", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1), mids(2, 3))
		f.run(testCfg.ActiveWindow)
		f.acks[3] = false
		wantNoChange(t, f.until(4*time.Second))
	})
	t.Run("learner whose entry expired", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1), mids(2, 3))
		f.peer(3).Expired = true
		wantNoChange(t, f.until(4*time.Second))
	})
	t.Run("learner without an entry", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1), mids(2, 3))
		f.v.Peers = slices.DeleteFunc(f.v.Peers, func(p Peer) bool { return p.ID == 3 })
		wantNoChange(t, f.until(4*time.Second))
	})
	t.Run("new leader starts over", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1), mids(2, 3))
		f.until(testCfg.ActiveWindow + testCfg.CatchUpFor - tick)
		f.v.Raft.Term = 2
		start := f.now
		d := f.until(10 * time.Second)
		if d.Change.IsZero() || f.now-start < testCfg.ActiveWindow+testCfg.CatchUpFor {
			t.Fatalf("promoted after %v in the new term; want ≥ %v", f.now-start, testCfg.ActiveWindow+testCfg.CatchUpFor)
		}
	})
}

// Dead voters: removed only on the leader's own evidence plus a majority of
// the voters' statements, and only together with a replacement unless the
// result stays odd and more tolerant.
func TestDeadVoters(t *testing.T) {
	type tc struct {
		name             string
		target           int
		voters, learners []ids.MemberID
		dead             []ids.MemberID
		setup            func(f *fx)
		want             map[OpType][]ids.MemberID
		waiting          string
	}
	for _, c := range []tc{
		{name: "replaced by a learner", voters: mids(1, 2, 3), learners: mids(4), dead: mids(3),
			want: map[OpType][]ids.MemberID{OpRemove: mids(3), OpPromote: mids(4)}},
		{name: "no replacement: kept", voters: mids(1, 2, 3), dead: mids(3), waiting: "no caught-up learner can replace it"},
		{name: "5 with 2 dead, no learners: 5 → 3", target: 5, voters: mids(1, 2, 3, 4, 5), dead: mids(4, 5),
			want: map[OpType][]ids.MemberID{OpRemove: mids(4, 5)}},
		{name: "5 with 1 dead, no learners: kept", target: 5, voters: mids(1, 2, 3, 4, 5), dead: mids(5)},
		{name: "5 with 2 dead, 1 learner: → 3, not 5 with a dead voter", target: 5, voters: mids(1, 2, 3, 4, 5), learners: mids(6), dead: mids(4, 5),
			want: map[OpType][]ids.MemberID{OpRemove: mids(4, 5)}},
		{name: "5 with 2 dead, 2 learners: both replaced", target: 5, voters: mids(1, 2, 3, 4, 5), learners: mids(6, 7), dead: mids(4, 5),
			want: map[OpType][]ids.MemberID{OpRemove: mids(4, 5), OpPromote: mids(6, 7)}},
		{name: "only the leader reports it", voters: mids(1, 2, 3), learners: mids(4), dead: mids(3),
			setup:   func(f *fx) { f.peer(2).Unreachable = nil },
			waiting: "only 1 of 3 voters report it unreachable"},
		{name: "a reporter whose entry expired does not count", voters: mids(1, 2, 3), learners: mids(4), dead: mids(3),
			setup:   func(f *fx) { f.peer(2).Expired = true },
			waiting: "only 1 of 3 voters report it unreachable"},
		{name: "a learner's report does not count", voters: mids(1, 2, 3), learners: mids(4), dead: mids(3),
			setup: func(f *fx) {
				f.peer(2).Unreachable = nil
				f.peer(4).Unreachable = mids(3)
			},
			waiting: "only 1 of 3 voters report it unreachable"},
		{name: "reports without the leader's evidence", voters: mids(1, 2, 3), learners: mids(4),
			setup: func(f *fx) {
				f.peer(2).Unreachable = mids(1, 3, 4)
				f.peer(3).Unreachable = mids(1, 2, 4)
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testCfg
			cfg.TargetVoters = c.target
			f := newFx(t, cfg, c.voters, c.learners)
			f.run(3 * time.Second) // learners catch up
			for _, id := range c.dead {
				f.kill(id)
			}
			if c.setup != nil {
				c.setup(f)
			}
			start := f.now
			d := f.until(3 * cfg.withDefaults().DeadMemberTimeout)
			if c.want == nil {
				wantNoChange(t, d)
				if !strings.Contains(d.Waiting, c.waiting) {
					t.Fatalf("waiting = %q, want it to mention %q", d.Waiting, c.waiting)
				}
				return
			}
			wantOps(t, d, c.want)
			if f.now-start < testCfg.DeadMemberTimeout {
				t.Fatalf("removed after %v, before the dead-member timeout %v", f.now-start, testCfg.DeadMemberTimeout)
			}
		})
	}
}

// Graceful leaves follow the replacement rules; a leaving leader hands over.
func TestLeaving(t *testing.T) {
	t.Run("voter replaced at once", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1, 2, 3), mids(4))
		f.until(3 * time.Second)
		f.peer(3).Role = RoleLeaving
		wantOps(t, f.step(), map[OpType][]ids.MemberID{OpRemove: mids(3), OpPromote: mids(4)})
	})
	t.Run("voter without replacement kept", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1, 2, 3), nil)
		f.peer(3).Role = RoleLeaving
		d := f.until(10 * time.Second)
		wantNoChange(t, d)
		if !strings.Contains(d.Waiting, "voter 3 is leaving") {
			t.Fatalf("waiting = %q", d.Waiting)
		}
	})
	t.Run("two of five", func(t *testing.T) {
		cfg := testCfg
		cfg.TargetVoters = 5
		f := newFx(t, cfg, mids(1, 2, 3, 4, 5), nil)
		f.until(2 * time.Second)
		f.peer(4).Role, f.peer(5).Role = RoleLeaving, RoleLeaving
		wantOps(t, f.step(), map[OpType][]ids.MemberID{OpRemove: mids(4, 5)})
	})
	t.Run("learner removed at once", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1), mids(2))
		f.peer(2).Role = RoleLeaving
		wantOps(t, f.step(), map[OpType][]ids.MemberID{OpRemove: mids(2)})
	})
	t.Run("expired leaving entry does not count", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1), mids(2))
		f.peer(2).Role, f.peer(2).Expired = RoleLeaving, true
		wantNoChange(t, f.step())
	})
	t.Run("leader hands over to the most caught-up active voter", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1, 2, 3, 4, 5), nil)
		f.lag[2], f.lag[3] = 3, 1
		f.until(2 * time.Second)
		f.acks[5] = false // inactive: not a candidate
		f.peer(4).Role = RoleLeaving
		f.until(2 * time.Second)
		f.v.Leaving = true
		d := f.step()
		if d.TransferTo != 3 || !d.Change.IsZero() {
			t.Fatalf("transfer to %s, change %q; want transfer to 3 and no change", d.TransferTo, d.Change)
		}
	})
	t.Run("lone leader leaving without a caught-up learner", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1), mids(2))
		f.lag[2] = 1000
		f.v.Leaving = true
		if d := f.until(5 * time.Second); d.TransferTo != 0 || !d.Change.IsZero() || d.Waiting != "" {
			t.Fatalf("decision %+v, want nothing", d)
		}
	})
	t.Run("lone leader hands over to a caught-up learner", func(t *testing.T) {
		f := newFx(t, testCfg, mids(1), mids(2))
		f.v.Leaving = true
		d := f.until(5 * time.Second)
		wantOps(t, d, map[OpType][]ids.MemberID{OpPromote: mids(2), OpRemove: mids(1)})
		if v, _ := d.Change.Apply(f.v.Raft.Voters, f.v.Raft.Learners); !slices.Equal(v, mids(2)) {
			t.Fatalf("voters after %q: %v", d.Change, v)
		}
	})
}

// Learners that die, or never acknowledge anything, are removed after the
// timeout; a removed id is never added again.
func TestLearnerRemoval(t *testing.T) {
	f := newFx(t, testCfg, mids(1), nil)
	f.peer(7).Role = RoleJoining // a node that asks to join but never runs raft
	d := f.step()
	wantOps(t, d, map[OpType][]ids.MemberID{OpAddLearner: mids(7)})
	f.apply(d.Change)
	f.acks[7] = false
	start := f.now
	d = f.until(time.Minute)
	wantOps(t, d, map[OpType][]ids.MemberID{OpRemove: mids(7)})
	if el := f.now - start; el < testCfg.DeadMemberTimeout || el > testCfg.DeadMemberTimeout+2*tick {
		t.Fatalf("removed after %v, want the dead-member timeout %v", el, testCfg.DeadMemberTimeout)
	}
	f.apply(d.Change)
	wantNoChange(t, f.until(time.Minute)) // its entry still says joining
}

// Only live, unexpired nodes that ask to join our cluster are added.
func TestAdditions(t *testing.T) {
	for _, tc := range []struct {
		name string
		peer Peer
		prep func(f *fx)
		add  bool
	}{
		{"joining", Peer{ID: 9, Live: true, Role: RoleJoining}, nil, true},
		{"expired", Peer{ID: 9, Live: true, Expired: true, Role: RoleJoining}, nil, false},
		{"not live", Peer{ID: 9, Role: RoleJoining}, nil, false},
		{"seeking", Peer{ID: 9, Live: true, Role: RoleSeeking}, nil, false},
		{"other cluster", Peer{ID: 9, Cluster: 0xdd, Live: true, Role: RoleJoining}, nil, false},
		{"removed before", Peer{ID: 9, Live: true, Role: RoleJoining}, func(f *fx) { f.removed[9] = true }, false},
		{"learner cap", Peer{ID: 9, Live: true, Role: RoleJoining}, func(f *fx) {
			f.v.Raft.Learners = mids(10, 11)
			f.p.cfg.MaxLearners = 2
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFx(t, testCfg, mids(1), nil)
			if tc.peer.Cluster == 0 {
				tc.peer.Cluster = testCluster
			}
			f.v.Peers = append(f.v.Peers, tc.peer)
			if tc.prep != nil {
				tc.prep(f)
			}
			d := f.step()
			if tc.add {
				wantOps(t, d, map[OpType][]ids.MemberID{OpAddLearner: mids(9)})
			} else {
				wantNoChange(t, d)
			}
		})
	}
}

// Nothing is proposed while a change is pending or without an active quorum.
func TestNoChangeThatCannotCommit(t *testing.T) {
	f := newFx(t, testCfg, mids(1), mids(2, 3))
	f.v.Raft.ConfChangePending = true
	if d := f.until(10 * time.Second); !d.Change.IsZero() || d.Waiting == "" {
		t.Fatalf("decision %+v while a change is pending", d)
	}
	f.v.Raft.ConfChangePending = false
	wantOps(t, f.step(), map[OpType][]ids.MemberID{OpPromote: mids(2, 3)})

	g := newFx(t, testCfg, mids(1, 2, 3), nil)
	g.peer(9).Role = RoleJoining
	g.acks[2], g.acks[3] = false, false
	g.until(2 * time.Second)
	if d := g.step(); !d.Change.IsZero() || !strings.Contains(d.Waiting, "only 1 of 3 voters active") {
		t.Fatalf("decision %+v without an active quorum", d)
	}
}

// An even voter count (made by an operator) is repaired by the next change,
// and the planner never makes one.
func TestEvenCountRepaired(t *testing.T) {
	for _, tc := range []struct {
		name             string
		target           int
		voters, learners []ids.MemberID
		want             []ids.MemberID // final voters
	}{
		{"2 voters", 3, mids(1, 2), nil, mids(1)},
		{"2 voters and a learner", 3, mids(1, 2), mids(3), mids(1, 2, 3)},
		{"4 voters, target 3", 3, mids(1, 2, 3, 4), nil, mids(1, 2, 3)},
		{"4 voters, target 5, a learner", 5, mids(1, 2, 3, 4), mids(5), mids(1, 2, 3, 4, 5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testCfg
			cfg.TargetVoters = tc.target
			f := newFx(t, cfg, tc.voters, tc.learners)
			changes := f.converge()
			if !slices.Equal(f.v.Raft.Voters, tc.want) {
				t.Fatalf("voters %v after %v, want %v", f.v.Raft.Voters, changes, tc.want)
			}
		})
	}
}

// A voter dies while the cluster grows towards 5: growth goes on around the
// silent voter, which is replaced once it counts as dead.
func TestGrowthAroundDeadVoter(t *testing.T) {
	cfg := testCfg
	cfg.TargetVoters = 5
	f := newFx(t, cfg, mids(1, 2, 3), mids(4, 5, 6))
	f.kill(3)
	changes := f.converge()
	if want := mids(1, 2, 4, 5, 6); !slices.Equal(f.v.Raft.Voters, want) {
		t.Fatalf("voters %v after %v, want %v", f.v.Raft.Voters, changes, want)
	}
	if len(changes) != 2 || !changes[1].Joint() {
		t.Fatalf("changes %v, want growth then one joint replacement", changes)
	}
}

// The rules under which a node stops itself.
func TestExit(t *testing.T) {
	member := func() *fx {
		f := newFx(t, testCfg, mids(1, 2, 3), nil)
		f.v.Raft.Leader, f.v.Raft.Lead = false, 0
		return f
	}
	t.Run("own removal applied", func(t *testing.T) {
		f := member()
		f.removed[1] = true
		if d := f.step(); !errors.Is(d.Exit, ErrRemoved) {
			t.Fatalf("exit = %v", d.Exit)
		}
	})
	t.Run("notice from a member of our configuration", func(t *testing.T) {
		f := member()
		f.v.Notices = []Notice{{From: 2, Cluster: testCluster, Kind: NoticeRemoved}}
		if d := f.step(); !errors.Is(d.Exit, ErrRemoved) {
			t.Fatalf("exit = %v", d.Exit)
		}
	})
	for _, n := range []Notice{
		{From: 9, Cluster: testCluster, Kind: NoticeRemoved}, // not in our configuration
		{From: 2, Cluster: testCluster, Kind: NoticeUnknown}, // does not know us (yet)
		{From: 2, Cluster: testCluster, Kind: NoticeMember},  // still a member
		{From: 1, Cluster: testCluster, Kind: NoticeRemoved}, // ourselves
		{From: 2, Cluster: 0xdd, Kind: NoticeRemoved},        // a recovered cluster, while we still have a leader
	} {
		f := member()
		f.peer(9).Role = RoleVoter
		f.v.Raft.Lead = 2
		f.v.Notices = []Notice{n}
		if d := f.step(); d.Exit != nil {
			t.Fatalf("notice %+v: exit %v", n, d.Exit)
		}
	}
	t.Run("a recovered cluster's notice, long without a leader", func(t *testing.T) {
		f := member()
		n := Notice{From: 2, Cluster: 0xdd, Kind: NoticeRemoved}
		for f.now < 3*testCfg.withDefaults().QueryAfter {
			f.v.Notices = []Notice{n}
			if d := f.step(); d.Exit != nil {
				t.Fatalf("exit at %v: %v", f.now, d.Exit)
			}
		}
	})
	t.Run("joining node: notice from a member that vouches", func(t *testing.T) {
		f := member()
		f.v.Raft.Voters = nil // not in its own configuration yet
		f.peer(9).Role = RoleJoining
		f.v.Notices = []Notice{{From: 9, Cluster: testCluster, Kind: NoticeRemoved}}
		if d := f.step(); d.Exit != nil {
			t.Fatalf("exit on a joining peer's word: %v", d.Exit)
		}
		f.peer(2).Role = RoleVoter
		f.peer(2).Expired = true
		f.v.Notices = []Notice{{From: 2, Cluster: testCluster, Kind: NoticeRemoved}}
		if d := f.step(); d.Exit != nil {
			t.Fatalf("exit on an expired peer's word: %v", d.Exit)
		}
		f.peer(2).Expired = false
		f.v.Notices = []Notice{{From: 2, Cluster: testCluster, Kind: NoticeRemoved}}
		if d := f.step(); !errors.Is(d.Exit, ErrRemoved) {
			t.Fatalf("exit = %v", d.Exit)
		}
	})
}

// Queries: after QueryAfter without a leader, then once per QueryAfter.
func TestQuery(t *testing.T) {
	f := newFx(t, testCfg, mids(1, 2, 3), nil)
	f.v.Raft.Leader, f.v.Raft.Lead = false, 0
	qa := testCfg.withDefaults().QueryAfter
	var at []time.Duration
	for f.now < 3*qa+qa/2 {
		if f.step().Query {
			at = append(at, f.now)
		}
	}
	want := []time.Duration{qa + tick, 2*qa + tick, 3*qa + tick}
	if !slices.Equal(at, want) {
		t.Fatalf("queries at %v, want %v", at, want)
	}
	f.v.Raft.Lead = 2
	if f.step().Query {
		t.Fatal("query with a leader")
	}
	f.v.Cluster = 0
	f.v.Raft.Lead = 0
	for range 100 {
		if f.step().Query {
			t.Fatal("query outside a cluster")
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{TargetVoters: 2}, {TargetVoters: 9}, {DeadMemberTimeout: -1},
		{DeadMemberTimeout: time.Second, ActiveWindow: 2 * time.Second}, {MaxLearners: -1},
	} {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: err = %v", c, err)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPlanner(0, Config{}); err == nil {
		t.Fatal("planner for member 0")
	}
}
