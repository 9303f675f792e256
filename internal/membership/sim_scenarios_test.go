package membership

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
)

// simSeeds is how many seeds each randomized simulation runs: SIMSEEDS, or
// 60 (12 with -short or -race).
func simSeeds(t *testing.T) uint64 {
	if n, err := strconv.ParseUint(os.Getenv("SIMSEEDS"), 10, 64); err == nil && n > 0 {
		return n
	}
	if testing.Short() || raceEnabled {
		return 12
	}
	return 60
}

// Random joins, kill -9s, restarts, partitions, graceful leaves, zombies
// and a liar. Spaced runs also check that nothing wedges while a majority
// of the processes is alive and that the membership converges before every
// fault; unspaced runs check safety and, at the end, convergence.
func TestSimRandom(t *testing.T) {
	for _, spaced := range []bool{true, false} {
		for _, tc := range []struct{ slots, target, founders int }{{5, 3, 1}, {7, 5, 1}, {6, 3, 3}, {7, 5, 3}} {
			t.Run(fmt.Sprintf("spaced=%v/slots=%d/target=%d/founders=%d", spaced, tc.slots, tc.target, tc.founders), func(t *testing.T) {
				t.Parallel()
				var changes, removals, exits int
				for seed := uint64(1); seed <= simSeeds(t); seed++ {
					cfg := simCfg
					cfg.TargetVoters = tc.target
					s := newSim(t, seed, cfg, tc.founders)
					s.spaced, s.checkWedge = spaced, spaced
					randomRun(s, tc.slots, tc.target, 3*time.Minute)
					changes, removals, exits = changes+s.changes, removals+s.removals, exits+s.exits
				}
				t.Logf("%d seeds: %d membership changes, %d removals, %d removed processes stopped", simSeeds(t), changes, removals, exits)
			})
		}
	}
}

// 1 → 3 and 1 → 3 → 5 growth with a kill -9 of each process at every
// moment of the growth (the killed slot restarts as a new process 3s
// later): the voter count is never even, and the cluster ends with target
// live voters unless the sole voter died before two learners could be
// promoted together.
func TestSimGrowthKillAtEveryStep(t *testing.T) {
	for _, target := range []int{3, 5} {
		t.Run(fmt.Sprintf("target=%d", target), func(t *testing.T) {
			t.Parallel()
			cfg := simCfg
			cfg.TargetVoters = target
			lost, runs := 0, 0
			for seed := uint64(1); seed <= min(3, simSeeds(t)/12); seed++ {
				for victim := range target {
					for killAt := 500 * time.Millisecond; killAt <= time.Duration(4*target)*time.Second; killAt += time.Duration(target-2) * 250 * time.Millisecond {
						runs++
						s := newSim(t, seed, cfg, 1)
						s.spaced = true
						restartAt := time.Duration(-1)
						for s.now < 90*time.Second {
							s.step()
							for slot := 1; slot < target; slot++ {
								if s.now == time.Duration(2*slot-1)*time.Second {
									s.start(slot, false)
								}
							}
							if s.now == killAt {
								for _, p := range s.alive() {
									if p.slot == victim {
										s.kill(p, target)
										restartAt = s.now + 3*time.Second
									}
								}
							}
							if s.now == restartAt {
								s.restartDead(target)
							}
						}
						s.checkConverged(target)
						if s.leader == 0 {
							lost++
							if victim != 0 {
								t.Fatalf("seed %d: killing slot %d at %v lost the quorum", seed, victim, killAt)
							}
							continue
						}
						if len(s.voters) != target {
							t.Fatalf("seed %d: killing slot %d at %v: voters %v, want %d live", seed, victim, killAt, s.voters, target)
						}
					}
				}
			}
			t.Logf("%d runs, %d lost the quorum (the sole voter died before the 1 → 3 promotion)", runs, lost)
		})
	}
}

// A node that asks to join but never acknowledges anything is added once,
// never promoted, removed after the dead-member timeout and never added
// again; nodes that die while joining are never added.
func TestSimZombieAndDeadJoiners(t *testing.T) {
	for seed := uint64(1); seed <= min(20, simSeeds(t)); seed++ {
		s := newSim(t, seed, simCfg, 1)
		z := s.start(1, true)
		s.run(2 * time.Second)
		dj := s.start(2, false)
		s.step()
		s.kill(dj, 3) // dies while joining, possibly before the leader saw it live
		s.run(time.Minute)
		if s.adds[z.id] != 1 || !s.removed[z.id] {
			t.Fatalf("seed %d: zombie added %d times, removed %v", seed, s.adds[z.id], s.removed[z.id])
		}
		if s.adds[dj.id] > 1 || s.isMember(dj.id) {
			t.Fatalf("seed %d: dead joiner added %d times, member %v", seed, s.adds[dj.id], s.isMember(dj.id))
		}
		if len(s.voters) != 1 {
			t.Fatalf("seed %d: voters %v", seed, s.voters)
		}
	}
}

// A member that reports everyone unreachable removes nobody.
func TestSimLiar(t *testing.T) {
	for seed := uint64(1); seed <= min(20, simSeeds(t)); seed++ {
		cfg := simCfg
		cfg.TargetVoters = 5
		s := newSim(t, seed, cfg, 5)
		s.procs[1+int(seed%4)].liar = true
		s.start(5, false)
		s.run(time.Minute)
		if s.removals != 0 {
			t.Fatalf("seed %d: %d removals with every process alive", seed, s.removals)
		}
	}
}

// A founder crashes at every moment of a rolling restart of a 3-voter
// cluster (each member leaves gracefully and its slot restarts at once).
func TestSimRollingRestart(t *testing.T) {
	for seed := uint64(1); seed <= min(30, simSeeds(t)); seed++ {
		s := newSim(t, seed, simCfg, 3)
		s.spaced = true
		s.run(5 * time.Second)
		for slot := range 3 {
			for _, p := range s.alive() {
				if p.slot == slot {
					s.leave(p, 3)
				}
			}
			for !s.slotFree(slot) {
				s.step()
			}
			s.start(slot, false)
			s.run(simRepair)
		}
		s.checkConverged(3)
		for _, id := range s.voters {
			if s.byID[id].started < 5*time.Second {
				t.Fatalf("seed %d: old member %s still a voter after the rolling restart: %v", seed, id, s.voters)
			}
		}
	}
}

// The simulation catches the old rules (promote any learner within 100
// entries of the commit index, one at a time): they pass through 2 voters
// and promote a learner that acknowledged nothing.
func TestSimCatchesNaivePlanner(t *testing.T) {
	s := newSim(t, 1, simCfg, 1)
	s.record, s.spaced = true, true
	s.newStep = func(self ids.MemberID) stepper {
		return &naivePlanner{self: self, dead: map[ids.MemberID]time.Duration{}, promote: true}
	}
	s.procs[0].plan = s.newStep(s.procs[0].id)
	s.run(time.Second)
	b := s.start(1, false)
	for !s.isMember(b.id) || len(s.voters) < 2 {
		s.step()
		if s.now > 10*time.Second {
			t.Fatal("the naive planner never promoted")
		}
	}
	s.kill(b, 3)
	s.run(2 * simRepair)
	var even, unacked bool
	for _, v := range s.violations {
		even = even || strings.Contains(v, "2 voters")
		unacked = unacked || strings.Contains(v, "has not acknowledged")
	}
	if !even || !unacked {
		t.Fatalf("the simulation missed the naive planner's faults (even count: %v, unacknowledged promotion: %v): %q", even, unacked, s.violations)
	}
}

// The simulation catches a planner that never promotes: once the sole
// voter dies, the learners that had time to be promoted are a majority of
// the processes, alive, and wedged.
func TestSimCatchesWedge(t *testing.T) {
	s := newSim(t, 1, simCfg, 1)
	s.record, s.spaced = true, true
	s.newStep = func(self ids.MemberID) stepper {
		return &naivePlanner{self: self, dead: map[ids.MemberID]time.Duration{}}
	}
	s.procs[0].plan = s.newStep(s.procs[0].id)
	s.start(1, false)
	s.start(2, false)
	s.run(simRepair + time.Second)
	s.kill(s.procs[0], 3)
	s.run(2 * simRepair)
	if !slices.ContainsFunc(s.violations, func(v string) bool { return strings.Contains(v, "wedged") }) {
		t.Fatalf("%d violations, none a wedge: %q", len(s.violations), s.violations[:min(3, len(s.violations))])
	}
}

// naivePlanner is the membership logic the planner replaces.
type naivePlanner struct {
	self    ids.MemberID
	dead    map[ids.MemberID]time.Duration
	promote bool
}

func (n *naivePlanner) Step(now time.Duration, v View) Decision {
	if !v.Raft.Leader || v.Raft.ConfChangePending {
		return Decision{}
	}
	live := 0
	for _, id := range v.Raft.Voters {
		if id == n.self || v.Raft.Progress[id].RecentActive {
			live++
			delete(n.dead, id)
		} else if _, ok := n.dead[id]; !ok {
			n.dead[id] = now
		}
	}
	for _, id := range v.Raft.Voters {
		if since, ok := n.dead[id]; ok && now-since >= simCfg.DeadMemberTimeout && live >= quorum(len(v.Raft.Voters)) && len(v.Raft.Voters) > 1 {
			return Decision{Change: Change{Ops: []Op{{OpRemove, id}}}}
		}
	}
	for _, p := range v.Peers {
		if p.Role == RoleJoining && !p.Expired && p.Live && !v.Raft.IsMember(p.ID) && !v.Raft.WasRemoved(p.ID) {
			return Decision{Change: Change{Ops: []Op{{OpAddLearner, p.ID}}}}
		}
	}
	if n.promote && len(v.Raft.Voters) < 3 {
		for _, id := range v.Raft.Learners {
			if v.Raft.Progress[id].Match+100 >= v.Raft.Commit {
				return Decision{Change: Change{Ops: []Op{{OpPromote, id}}}}
			}
		}
	}
	return Decision{}
}

// TestSimReplay replays one run of TestSimRandom with a trace of its
// events, e.g. SIMREPLAY=spaced=true/slots=5/target=3/founders=1/seed=4.
func TestSimReplay(t *testing.T) {
	spec := os.Getenv("SIMREPLAY")
	if spec == "" {
		t.Skip("set SIMREPLAY to replay a run")
	}
	var spaced bool
	var slots, target, founders int
	var seed uint64
	if _, err := fmt.Sscanf(spec, "spaced=%t/slots=%d/target=%d/founders=%d/seed=%d", &spaced, &slots, &target, &founders, &seed); err != nil {
		t.Fatalf("SIMREPLAY %q: %v", spec, err)
	}
	cfg := simCfg
	cfg.TargetVoters = target
	s := newSim(t, seed, cfg, founders)
	s.spaced, s.checkWedge, s.trace = spaced, spaced, true
	randomRun(s, slots, target, 3*time.Minute)
}
