package membership

import (
	"slices"
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
)

const (
	testCluster ids.ClusterID = 0xc1
	tick                      = 100 * time.Millisecond
)

// fx drives one planner, the leader (member 1) of a cluster whose members
// answer (or not) as the test says. Time advances by tick per step.
type fx struct {
	t       *testing.T
	p       *Planner
	now     time.Duration
	v       View
	acks    map[ids.MemberID]bool // members that answer the leader
	lag     map[ids.MemberID]uint64
	writes  bool // the commit index grows by one per step
	removed idSet
}

// idSet is a set of member ids, for View.Raft.Removed.
type idSet map[ids.MemberID]bool

func (s idSet) has(id ids.MemberID) bool { return s[id] }

func newFx(t *testing.T, cfg Config, voters, learners []ids.MemberID) *fx {
	t.Helper()
	p, err := NewPlanner(1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fx{t: t, p: p, acks: map[ids.MemberID]bool{}, lag: map[ids.MemberID]uint64{}, removed: idSet{}}
	f.v = View{
		Cluster: testCluster,
		Raft: Raft{
			Term: 1, Leader: true, Lead: 1, Commit: 10,
			Voters: slices.Clone(voters), Learners: slices.Clone(learners),
			Progress: map[ids.MemberID]Progress{},
		},
	}
	for _, id := range append(slices.Clone(voters), learners...) {
		if id == 1 {
			continue
		}
		f.acks[id] = true
		role := RoleVoter
		if slices.Contains(learners, id) {
			role = RoleLearner
		}
		f.v.Peers = append(f.v.Peers, Peer{ID: id, Cluster: testCluster, Live: true, Role: role})
	}
	return f
}

// peer returns the peer entry of id, adding one if needed.
func (f *fx) peer(id ids.MemberID) *Peer {
	for i := range f.v.Peers {
		if f.v.Peers[i].ID == id {
			return &f.v.Peers[i]
		}
	}
	f.v.Peers = append(f.v.Peers, Peer{ID: id, Cluster: testCluster, Live: true})
	return &f.v.Peers[len(f.v.Peers)-1]
}

// kill makes id stop answering and every other member report it
// unreachable.
func (f *fx) kill(id ids.MemberID) {
	f.acks[id] = false
	f.peer(id).Live = false
	for i := range f.v.Peers {
		if pr := &f.v.Peers[i]; pr.ID != id && f.acks[pr.ID] {
			pr.Unreachable = append(pr.Unreachable, id)
		}
	}
}

// step advances time by one tick, refreshes progress and steps the planner.
func (f *fx) step() Decision {
	f.now += tick
	if f.writes {
		f.v.Raft.Commit++
	}
	f.v.Raft.Removed = f.removed.has
	f.v.Raft.Progress[1] = Progress{Match: f.v.Raft.Commit, RecentActive: true}
	for _, id := range append(slices.Clone(f.v.Raft.Voters), f.v.Raft.Learners...) {
		if id == 1 {
			continue
		}
		pr := f.v.Raft.Progress[id]
		if f.acks[id] {
			pr.RecentActive = true
			if c := f.v.Raft.Commit; c > f.lag[id] {
				pr.Match = max(pr.Match, c-f.lag[id])
			}
		} else {
			pr.RecentActive = false
		}
		f.v.Raft.Progress[id] = pr
	}
	return f.p.Step(f.now, f.v)
}

// until steps for at most d and returns the first decision with a change,
// exit or transfer (or the last decision).
func (f *fx) until(d time.Duration) Decision {
	f.t.Helper()
	var last Decision
	for end := f.now + d; f.now < end; {
		last = f.step()
		if !last.Change.IsZero() || last.Exit != nil || last.TransferTo != 0 {
			return last
		}
	}
	return last
}

// run steps for d, ignoring decisions.
func (f *fx) run(d time.Duration) {
	for end := f.now + d; f.now < end; {
		f.step()
	}
}

// converge applies the planner's changes until it proposes none for 10s,
// checking after each that the voter count is odd, and returns the changes.
func (f *fx) converge() []Change {
	f.t.Helper()
	var out []Change
	for range 20 {
		d := f.until(10 * time.Second)
		if d.Change.IsZero() {
			return out
		}
		f.apply(d.Change)
		out = append(out, d.Change)
		if n := len(f.v.Raft.Voters); n%2 == 0 {
			f.t.Fatalf("even voter count %d after %q", n, d.Change)
		}
	}
	f.t.Fatalf("no convergence after %v", out)
	return nil
}

// apply applies c to the fixture's configuration, as raft would.
func (f *fx) apply(c Change) {
	f.v.Raft.Voters, f.v.Raft.Learners = c.Apply(f.v.Raft.Voters, f.v.Raft.Learners)
	for _, op := range c.Ops {
		switch op.Type {
		case OpRemove:
			f.removed[op.ID] = true
			delete(f.v.Raft.Progress, op.ID)
		case OpAddLearner:
			f.v.Raft.Progress[op.ID] = Progress{RecentActive: true}
		}
	}
}

func ops(c Change) map[OpType][]ids.MemberID {
	out := map[OpType][]ids.MemberID{}
	for _, op := range c.Ops {
		out[op.Type] = append(out[op.Type], op.ID)
	}
	for _, l := range out {
		slices.Sort(l)
	}
	return out
}

func mids(list ...ids.MemberID) []ids.MemberID { return list }
