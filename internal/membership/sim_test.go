package membership

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
)

// The simulation models raft membership abstractly, on logical time in
// steps of simTick:
//   - processes are alive or dead; the network is a set of partition groups
//     (processes in one group reach each other);
//   - a leader exists while it is an alive voter whose group holds a quorum
//     of the voters; after losing one, a new leader is elected after
//     simElection among the voters of a group that holds a quorum;
//   - the leader's writes advance the commit index every step; members
//     connected to it acknowledge (voters at once, learners after a
//     catch-up delay once connected); raft's RecentActive flag is set for
//     members that acknowledged, with random blips to false;
//   - a conf change applies atomically after a delay if the leader is
//     unchanged and quorums of the old and the new voters reach it; a change
//     pending when the leader changes is dropped or kept at random;
//   - each process's applied configuration is the cluster's as of the last
//     time it was connected to a leader as a member;
//   - gossip entries: each process knows the entries of those it shared a
//     group with, with their role and unreachable set as of then, expired
//     after simEntryTTL without contact (dead processes' entries stay, as
//     re-gossiped tombstoned copies would);
//   - forged inputs: zombies (processes that ask to join and answer probes
//     but never run raft) and liars (members that report everyone
//     unreachable);
//   - removed processes that reach a member get a removal notice; queries
//     are answered by reachable members from their applied state.
const (
	simTick     = 100 * time.Millisecond
	simElection = 1500 * time.Millisecond
	simEntryTTL = 8 * time.Second
	simLeave    = 3 * time.Second // a leaving process stops after this even if not removed
)

var simCfg = Config{DeadMemberTimeout: 5 * time.Second, ActiveWindow: time.Second, CatchUpFor: time.Second}

// simRepair bounds the repair after one fault: the dead-member timeout,
// the ack target's window, the catch-up period and delay, an election,
// a few conf changes and the time a restarted process needs to be added.
const simRepair = 20 * time.Second

// stepper is a membership planner (the real one, or a naive one that the
// simulation must catch).
type stepper interface {
	Step(now time.Duration, v View) Decision
}

type simEntry struct {
	role        Role
	unreachable []ids.MemberID
	heard       time.Duration
}

type simProc struct {
	id        ids.MemberID
	slot      int
	alive     bool
	started   time.Duration
	zombie    bool
	liar      bool
	leaving   bool
	leaveAt   time.Duration
	exited    error
	plan      stepper
	entries   map[ids.MemberID]*simEntry // gossip this process holds
	notices   []Notice
	cfgV      []ids.MemberID // applied configuration
	cfgL      []ids.MemberID
	removed   map[ids.MemberID]bool
	lastLead  time.Duration // last contact with a leader
	term      uint64
	synced    bool // a learner that has caught up with the leader's log
	syncAt    time.Duration
	match     uint64
	lastAck   time.Duration // last acknowledgement to the current leader
	everVoter bool
	diedAt    time.Duration
	waiting   string
}

type simChange struct {
	c        Change
	term     uint64
	leader   ids.MemberID
	applyAt  time.Duration
	proposed time.Duration
}

type sim struct {
	t         *testing.T
	seed      uint64
	rng       *rand.Rand
	cfg       Config
	now       time.Duration
	procs     []*simProc
	byID      map[ids.MemberID]*simProc
	group     map[int]int   // partition group of each slot (absent: 0)
	wholeAt   time.Duration // when the network last became whole
	voters    []ids.MemberID
	learners  []ids.MemberID
	removed   map[ids.MemberID]bool
	leader    ids.MemberID
	term      uint64
	noLeader  time.Duration // since when there is no leader
	commit    uint64
	pending   *simChange
	nextID    uint64
	lastFault time.Duration
	newStep   func(self ids.MemberID) stepper
	// Counters for the report.
	changes, removals, promotions, exits int
	adds                                 map[ids.MemberID]int
	checkWedge                           bool
	// spaced: faults are at least simRepair apart; the membership must have
	// converged before each.
	spaced bool
	// record: collect violations instead of failing (for a planner the
	// simulation must catch).
	record     bool
	violations []string
	trace      bool // log events (set SIMTRACE=1)
}

func (s *sim) tracef(format string, args ...any) {
	if s.trace {
		s.t.Logf("%v: %s", s.now, fmt.Sprintf(format, args...))
	}
}

func newSim(t *testing.T, seed uint64, cfg Config, founders int) *sim {
	s := &sim{
		t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15+1)), cfg: cfg,
		byID: map[ids.MemberID]*simProc{}, group: map[int]int{}, removed: map[ids.MemberID]bool{},
		adds:       map[ids.MemberID]int{},
		checkWedge: true, trace: os.Getenv("SIMTRACE") != "",
	}
	s.newStep = func(self ids.MemberID) stepper {
		p, err := NewPlanner(self, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for i := range founders {
		p := s.start(i, false)
		s.voters = append(s.voters, p.id)
		p.everVoter = true
	}
	s.leader, s.term = s.voters[0], 1
	for _, p := range s.procs {
		s.syncMember(p)
	}
	return s
}

// fatalf reports a violated invariant: it fails the test, or, when the
// simulation runs a planner that is expected to fail, records it.
func (s *sim) fatalf(format string, args ...any) {
	s.t.Helper()
	msg := fmt.Sprintf("seed %d at %v: %s\nvoters %v learners %v leader %s pending %v", s.seed, s.now, fmt.Sprintf(format, args...),
		s.voters, s.learners, s.leader, s.pending)
	if s.record {
		s.violations = append(s.violations, msg)
		return
	}
	s.t.Fatal(msg)
}

// start runs a new process (a new member id) in slot.
func (s *sim) start(slot int, zombie bool) *simProc {
	s.nextID++
	id := ids.MemberID(s.nextID<<8 | uint64(slot))
	p := &simProc{id: id, slot: slot, alive: true, started: s.now, zombie: zombie,
		entries: map[ids.MemberID]*simEntry{}, removed: map[ids.MemberID]bool{}}
	p.plan = s.newStep(id)
	s.tracef("start %s (zombie %v)", id, zombie)
	s.procs = append(s.procs, p)
	s.byID[id] = p
	return p
}

func (s *sim) connected(a, b ids.MemberID) bool {
	pa, pb := s.byID[a], s.byID[b]
	return pa != nil && pb != nil && pa.alive && pb.alive && s.group[pa.slot] == s.group[pb.slot]
}

// raftUp: a process that answers raft traffic.
func (s *sim) raftUp(id ids.MemberID) bool {
	p := s.byID[id]
	return p != nil && p.alive && !p.zombie
}

func (s *sim) isMember(id ids.MemberID) bool {
	return slices.Contains(s.voters, id) || slices.Contains(s.learners, id)
}

// quorumAt reports whether the voters that leader reaches (itself
// included) in list form a quorum of list.
func (s *sim) quorumAt(leader ids.MemberID, list []ids.MemberID) bool {
	n := 0
	for _, v := range list {
		if v == leader || s.raftUp(v) && s.connected(leader, v) {
			n++
		}
	}
	return n >= quorum(len(list))
}

func (s *sim) role(p *simProc) Role {
	switch {
	case p.leaving:
		return RoleLeaving
	case slices.Contains(p.cfgV, p.id):
		return RoleVoter
	case slices.Contains(p.cfgL, p.id):
		return RoleLearner
	}
	return RoleJoining
}

// syncMember copies the cluster's applied state to a member connected to
// the leader.
func (s *sim) syncMember(p *simProc) {
	p.cfgV, p.cfgL = slices.Clone(s.voters), slices.Clone(s.learners)
	p.removed = make(map[ids.MemberID]bool, len(s.removed))
	for id := range s.removed {
		p.removed[id] = true
	}
	p.lastLead, p.term = s.now, s.term
}

// stepRaft advances the abstract raft cluster by one tick.
func (s *sim) stepRaft() {
	if s.leader != 0 {
		l := s.byID[s.leader]
		if !l.alive || !slices.Contains(s.voters, s.leader) || !s.quorumAt(s.leader, s.voters) {
			s.tracef("leader %s lost", s.leader)
			s.leader, s.noLeader = 0, s.now
			if s.pending != nil && s.rng.IntN(2) == 0 {
				s.pending = nil // not replicated: lost with the leader
			}
		}
	}
	if s.leader == 0 && s.now-s.noLeader >= simElection {
		var cands []ids.MemberID
		for _, v := range s.voters {
			if s.raftUp(v) && s.quorumAt(v, s.voters) {
				cands = append(cands, v)
			}
		}
		if len(cands) > 0 {
			s.leader = cands[s.rng.IntN(len(cands))]
			s.term++
			s.tracef("leader %s elected, term %d", s.leader, s.term)
		}
	}
	if s.leader == 0 {
		return
	}
	if s.pending != nil && s.now >= s.pending.applyAt {
		s.tryApply()
	}
	s.commit++
	for _, p := range s.procs {
		if !s.raftUp(p.id) || !s.connected(s.leader, p.id) {
			p.synced, p.syncAt = false, 0
			continue
		}
		if !s.isMember(p.id) {
			if s.removed[p.id] && slices.Contains(append(slices.Clone(p.cfgV), p.cfgL...), p.id) && s.rng.IntN(3) == 0 {
				// It applied its own removal before the leader stopped
				// sending to it.
				p.removed[p.id] = true
			}
			continue
		}
		s.syncMember(p)
		p.lastAck = s.now
		switch {
		case slices.Contains(s.voters, p.id) || p.synced:
			p.match = s.commit - uint64(s.rng.IntN(2))
		case p.syncAt == 0:
			p.syncAt = s.now + time.Duration(500+s.rng.IntN(2500))*time.Millisecond
		case s.now >= p.syncAt:
			p.synced, p.syncAt = true, 0
		default:
			p.match = s.commit / 2
		}
	}
}

// tryApply applies the pending change once quorums of the old and the new
// voters reach the leader (joint consensus).
func (s *sim) tryApply() {
	c := s.pending
	if c.term != s.term && s.leader == 0 {
		return
	}
	nv, nl := c.c.Apply(s.voters, s.learners)
	if !s.quorumAt(s.leader, s.voters) || !s.quorumAt(s.leader, nv) {
		return
	}
	s.voters, s.learners = nv, nl
	for _, op := range c.c.Ops {
		if op.Type == OpRemove {
			s.removed[op.ID] = true
			s.removals++
		}
		if op.Type == OpPromote {
			s.byID[op.ID].everVoter = true
			s.promotions++
		}
		if op.Type == OpAddLearner {
			s.adds[op.ID]++
		}
	}
	s.tracef("applied %q (%s): voters %v learners %v", c.c, c.c.Reason, s.voters, s.learners)
	s.pending = nil
	s.changes++
	if len(s.voters)%2 == 0 {
		s.fatalf("even voter count after %q", c.c)
	}
}

// step advances the whole simulation by one tick.
func (s *sim) step() {
	s.now += simTick
	s.stepRaft()
	s.gossip()
	// Removed processes that reach a member hear about it.
	for _, p := range s.procs {
		if !p.alive || p.zombie || !s.removed[p.id] {
			continue
		}
		for _, q := range s.procs {
			if q.alive && !q.zombie && q.removed[p.id] && s.connected(p.id, q.id) && s.rng.IntN(3) == 0 {
				p.notices = append(p.notices, Notice{From: q.id, Cluster: testCluster, Kind: NoticeRemoved, Term: q.term})
				break
			}
		}
	}
	for _, p := range s.procs {
		if !p.alive || p.zombie {
			continue
		}
		d := p.plan.Step(s.now, s.view(p))
		if s.trace && p.id == s.leader && d.Waiting != p.waiting {
			s.tracef("leader %s waiting: %s", p.id, d.Waiting)
		}
		p.waiting = d.Waiting
		s.act(p, d)
	}
	for _, p := range s.procs {
		if p.alive && p.leaving && (s.removed[p.id] || s.now >= p.leaveAt) {
			p.alive, p.diedAt = false, s.now // a graceful leave ends the process
		}
	}
	s.checkLiveness()
}

func (s *sim) act(p *simProc, d Decision) {
	if d.Exit != nil {
		if !s.removed[p.id] {
			s.fatalf("process %s exited although not removed: %v", p.id, d.Exit)
		}
		p.alive, p.exited, p.diedAt = false, d.Exit, s.now
		s.exits++
		s.tracef("%s exits: %v", p.id, d.Exit)
		return
	}
	if d.Query {
		for _, q := range s.procs {
			if q == p || !q.alive || q.zombie || !s.connected(p.id, q.id) || !slices.Contains(append(slices.Clone(q.cfgV), q.cfgL...), q.id) {
				continue
			}
			kind := NoticeUnknown
			switch {
			case q.removed[p.id]:
				kind = NoticeRemoved
			case slices.Contains(append(slices.Clone(q.cfgV), q.cfgL...), p.id):
				kind = NoticeMember
			}
			p.notices = append(p.notices, Notice{From: q.id, Cluster: testCluster, Kind: kind, Term: q.term})
		}
	}
	if s.leader != p.id {
		if !d.Change.IsZero() || d.TransferTo != 0 {
			s.fatalf("non-leader %s decided %q / transfer %s", p.id, d.Change, d.TransferTo)
		}
		return
	}
	if d.TransferTo != 0 && s.raftUp(d.TransferTo) && s.connected(p.id, d.TransferTo) && slices.Contains(s.voters, d.TransferTo) {
		s.leader = d.TransferTo
		s.term++
		return
	}
	if d.Change.IsZero() {
		return
	}
	if s.pending != nil {
		s.fatalf("leader %s proposed %q while %q is pending", p.id, d.Change, s.pending.c)
		return
	}
	s.checkProposal(p, d.Change)
	s.pending = &simChange{c: d.Change, term: s.term, leader: p.id, proposed: s.now,
		applyAt: s.now + time.Duration(100+s.rng.IntN(500))*time.Millisecond}
}

func (s *sim) partitioned() bool {
	return len(s.group) > 0
}

func (s *sim) alive() []*simProc {
	var out []*simProc
	for _, p := range s.procs {
		if p.alive {
			out = append(out, p)
		}
	}
	return out
}

// slotFree reports whether no alive process runs in slot.
func (s *sim) slotFree(slot int) bool {
	for _, p := range s.procs {
		if p.slot == slot && p.alive {
			return false
		}
	}
	return true
}

func (s *sim) run(d time.Duration) {
	for end := s.now + d; s.now < end; {
		s.step()
	}
}
