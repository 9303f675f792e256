package membership

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
)

// voterState classifies one voter for planVoters.
type voterState struct {
	id      ids.MemberID
	active  bool // the leader heard from it within ActiveWindow (the leader itself: always)
	dead    bool // silent for DeadMemberTimeout and a majority of voters report it unreachable
	leaving bool // asks to be removed
	silent  time.Duration
	match   uint64
}

func (s voterState) gone() bool    { return s.dead || s.leaving }
func (s voterState) healthy() bool { return s.active && !s.gone() }

// observeCatchUp updates, at every step of the leader, whether each learner
// is caught up. A learner is caught up at a step when it has acknowledged
// the commit index of ActiveWindow ago (which is nonzero), the leader heard
// from it within ActiveWindow, its own entry is unexpired and it is not
// leaving. It is ready for promotion once that has held at every step for
// CatchUpFor. A learner that never acknowledged anything (Match 0) is never
// caught up, however young the cluster.
func (p *Planner) observeCatchUp(now time.Duration, v *View, peers map[ids.MemberID]*Peer) {
	target := p.lead.ackTarget(now, p.cfg.ActiveWindow)
	for _, id := range v.Raft.Learners {
		t := p.lead.members[id]
		if t == nil {
			continue
		}
		pr := peers[id]
		ok := target > 0 && v.Raft.Progress[id].Match >= target &&
			p.lead.active(id, now, p.cfg.ActiveWindow) &&
			pr != nil && !pr.Expired && pr.Role != RoleLeaving
		switch {
		case !ok:
			t.caughtUp = false
		case !t.caughtUp:
			t.caughtUp, t.caughtUpSince = true, now
		}
	}
}

// readyLearners lists the learners ready for promotion, those caught up
// longest first.
func (p *Planner) readyLearners(now time.Duration, v *View) []ids.MemberID {
	var out []ids.MemberID
	for _, id := range v.Raft.Learners {
		if t := p.lead.members[id]; t != nil && t.caughtUp && now-t.caughtUpSince >= p.cfg.CatchUpFor {
			out = append(out, id)
		}
	}
	slices.SortFunc(out, func(a, b ids.MemberID) int {
		ta, tb := p.lead.members[a], p.lead.members[b]
		return cmp.Or(cmp.Compare(ta.caughtUpSince, tb.caughtUpSince),
			cmp.Compare(v.Raft.Progress[b].Match, v.Raft.Progress[a].Match), cmp.Compare(a, b))
	})
	return out
}

// unreachableReports counts the voters that state that id is unreachable:
// the leader (whose raft progress shows id silent) and every other voter
// whose own signed, unexpired entry lists id as unreachable.
func (p *Planner) unreachableReports(v *View, peers map[ids.MemberID]*Peer, id ids.MemberID) int {
	n := 1
	for _, w := range v.Raft.Voters {
		if w == p.self || w == id {
			continue
		}
		if pr := peers[w]; pr != nil && !pr.Expired && slices.Contains(pr.Unreachable, id) {
			n++
		}
	}
	return n
}

// goneFromMesh reports whether id's own entry has expired (or is gone) in
// our view. Mesh gossip floods every connection, relayed by every node, so
// an entry that did not reach this leader for the entry lifetime did not
// reach any node connected to it either, and those include the active
// quorum that every change requires: id is cut from a majority of the
// voters, or dead. It stands in for the voters' statements once those
// lapse: a transport lists as unreachable only peers whose entries it
// still holds, so after a dead voter's entry expired nobody reports it.
func goneFromMesh(peers map[ids.MemberID]*Peer, id ids.MemberID) bool {
	pr := peers[id]
	return pr == nil || pr.Expired
}

// voterScore ranks configurations; higher is better, compared field by
// field.
type voterScore struct {
	odd       int // 1 when the voter count is odd
	tolerance int // healthy voters beyond a quorum: further failures survived
	goneLeft  int // -(dead or leaving voters kept)
	nearness  int // -|voters - target|
	churn     int // -(operations)
}

func (a voterScore) cmp(b voterScore) int {
	return cmp.Or(cmp.Compare(a.odd, b.odd), cmp.Compare(a.tolerance, b.tolerance),
		cmp.Compare(a.goneLeft, b.goneLeft), cmp.Compare(a.nearness, b.nearness), cmp.Compare(a.churn, b.churn))
}

// planVoters decides one change of the voter set. The rules, and why:
//
//   - A voter is dead only when the leader has not heard from it for
//     DeadMemberTimeout AND a majority of the voters (the leader included)
//     state it is unreachable, each in its own signed entry, or its own
//     entry expired in the leader's view (see goneFromMesh): no removal
//     rests on a minority's word, and a peer that calls everyone unreachable
//     cannot remove anyone the leader still hears.
//   - A voter that asks to leave (its own signed entry) is treated as gone
//     at once, for the same replacement rules.
//   - Candidates are every combination of removing some gone voters,
//     promoting some ready learners and, only when the voter count is
//     already even (an operator made it so), demoting one voter. A candidate
//     must have an odd voter count, keep the leader, not exceed the larger of
//     the target and the current count, and leave a quorum of the new
//     configuration active (so that the joint change can commit and the new
//     configuration has a leader).
//   - The best candidate by (odd count, healthy voters beyond a quorum,
//     fewer gone voters kept, closeness to the target, fewer operations) is
//     proposed if it beats keeping the configuration. All of its operations
//     form one joint change, so the applied voter count is never even:
//     1 → 3 promotes two learners at once, a dead voter is removed in the
//     same change that promotes its replacement, and without a replacement
//     a single dead voter is kept, since removing it would leave an even
//     count that a second failure wedges for ever (1 → 2 voters, one dies:
//     no quorum, and no change can commit any more). Several dead voters
//     are removed at once when that keeps the count odd and the
//     configuration more fault tolerant (5 with 2 dead → 3).
//
// It returns the change, or why nothing is done although something is
// amiss.
func (p *Planner) planVoters(now time.Duration, v *View, peers map[ids.MemberID]*Peer) (Change, string) {
	target := p.cfg.TargetVoters
	var why []string
	states := make([]voterState, 0, len(v.Raft.Voters))
	for _, id := range v.Raft.Voters {
		s := voterState{id: id, match: v.Raft.Progress[id].Match}
		if id == p.self {
			s.active = true
			states = append(states, s)
			continue
		}
		s.active = p.lead.active(id, now, p.cfg.ActiveWindow)
		s.leaving = leaving(peers, id)
		s.silent = p.lead.silentFor(id, now)
		if s.silent >= p.cfg.DeadMemberTimeout {
			reports, need := p.unreachableReports(v, peers, id), quorum(len(v.Raft.Voters))
			if reports >= need || goneFromMesh(peers, id) {
				s.dead = true
			} else {
				why = append(why, fmt.Sprintf("voter %s silent for longer than the dead-member timeout, but only %d of %d voters report it unreachable (%d needed to remove it)",
					id, reports, len(v.Raft.Voters), need))
			}
		}
		states = append(states, s)
	}
	ready := p.readyLearners(now, v)

	var gone, keep []voterState
	for _, s := range states {
		if s.gone() {
			gone = append(gone, s)
		} else {
			keep = append(keep, s)
		}
	}
	// Remove the dead (longest silent first) before the leaving.
	slices.SortFunc(gone, func(a, b voterState) int {
		return cmp.Or(-cmp.Compare(boolInt(a.dead), boolInt(b.dead)), -cmp.Compare(a.silent, b.silent), cmp.Compare(a.id, b.id))
	})
	var demotable []voterState
	if len(states)%2 == 0 {
		for _, s := range keep {
			if s.id != p.self {
				demotable = append(demotable, s)
			}
		}
		// Demote the least useful: inactive first, then the one furthest behind.
		slices.SortFunc(demotable, func(a, b voterState) int {
			return cmp.Or(cmp.Compare(boolInt(a.active), boolInt(b.active)), cmp.Compare(a.match, b.match), -cmp.Compare(a.id, b.id))
		})
		demotable = demotable[:min(1, len(demotable))]
	}

	score := func(r, np, nd int) (voterScore, bool) {
		n := len(states) - r - nd + np
		healthy, active := np, np // promoted learners are caught up, hence active
		for _, s := range gone[r:] {
			healthy += boolInt(s.healthy())
			active += boolInt(s.active)
		}
		for _, s := range keep {
			if slices.ContainsFunc(demotable[:nd], func(d voterState) bool { return d.id == s.id }) {
				continue
			}
			healthy += boolInt(s.healthy())
			active += boolInt(s.active)
		}
		ok := n >= 1 && active >= quorum(n)
		return voterScore{
			odd:       n % 2,
			tolerance: healthy - quorum(n),
			nearness:  -abs(n - target),
			goneLeft:  -(len(gone) - r),
			churn:     -(r + np + nd),
		}, ok
	}

	best, _ := score(0, 0, 0)
	bestR, bestP, bestD := 0, 0, 0
	limit := max(target, len(states))
	for r := 0; r <= len(gone); r++ {
		for np := 0; np <= len(ready); np++ {
			for nd := 0; nd <= len(demotable); nd++ {
				n := len(states) - r - nd + np
				if r+np+nd == 0 || n%2 == 0 || n > limit {
					continue
				}
				s, ok := score(r, np, nd)
				if ok && s.cmp(best) > 0 {
					best, bestR, bestP, bestD = s, r, np, nd
				}
			}
		}
	}
	if bestR+bestP+bestD > 0 {
		var c Change
		var reasons []string
		for _, id := range ready[:bestP] {
			c.Ops = append(c.Ops, Op{OpPromote, id})
		}
		for _, s := range gone[:bestR] {
			c.Ops = append(c.Ops, Op{OpRemove, s.id})
			if s.dead {
				reasons = append(reasons, fmt.Sprintf("voter %s dead (silent %v)", s.id, s.silent.Round(time.Millisecond)))
			} else {
				reasons = append(reasons, fmt.Sprintf("voter %s leaving", s.id))
			}
		}
		for _, s := range demotable[:bestD] {
			c.Ops = append(c.Ops, Op{OpDemote, s.id})
			reasons = append(reasons, fmt.Sprintf("even voter count %d", len(states)))
		}
		n := len(states) - bestR - bestD + bestP
		if bestP > 0 {
			reasons = append(reasons, fmt.Sprintf("%d caught-up learners", bestP))
		}
		c.Reason = fmt.Sprintf("%s: %d → %d voters", strings.Join(reasons, ", "), len(states), n)
		return c, ""
	}
	for _, s := range gone {
		what := "dead"
		if !s.dead {
			what = "leaving"
		}
		why = append(why, fmt.Sprintf("voter %s is %s, but no caught-up learner can replace it and removing it alone would leave an even voter count", s.id, what))
	}
	if n := len(states); n < target {
		why = append(why, fmt.Sprintf("%d voters, target %d: growing needs 2 caught-up learners at once (%d ready, %d learners)", n, target, len(ready), len(v.Raft.Learners)))
	}
	return Change{}, strings.Join(why, "; ")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
