package membership

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
)

// Errors a Decision's Exit wraps.
var (
	// ErrRemoved: the cluster removed this member. Ids are never reused, so
	// the process cannot rejoin: a new process (a new member) must be started.
	ErrRemoved = errors.New("membership: member removed from the cluster")
)

// Decision is what the caller must do after a Step.
type Decision struct {
	// Exit, when non-nil, means: stop this node. It wraps ErrRemoved.
	// Nothing else in the decision is set then.
	Exit error
	// TransferTo, when nonzero, means: hand leadership over to this voter
	// (this leader is leaving).
	TransferTo ids.MemberID
	// Change is at most one membership change to propose (zero: none). The
	// caller proposes it and waits until it is applied or abandoned before
	// stepping again.
	Change Change
	// Query means: ask the members of this node's configuration (or, while
	// joining, of the cluster it joins) whether it is still a member. The
	// answers arrive as Notices in later views.
	Query bool
	// Waiting says why the membership differs from what the rules aim for
	// and nothing is done about it now ("" when nothing is amiss). Log it
	// when it changes.
	Waiting string
}

// Planner decides membership changes from views of the cluster. It is pure:
// no goroutines, no clock (the caller passes a logical time that never goes
// backwards), no I/O, and deterministic for a given sequence of steps. Not
// safe for concurrent use.
type Planner struct {
	cfg  Config
	self ids.MemberID

	lead *leaderState // nil while not leading

	noLeaderSince time.Duration // valid if noLeader
	noLeader      bool
	lastQuery     time.Duration // valid if queried
	queried       bool
}

// NewPlanner returns the planner of member self. cfg must be valid.
func NewPlanner(self ids.MemberID, cfg Config) (*Planner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if self == 0 {
		return nil, fmt.Errorf("%w: member id 0", ErrInvalidConfig)
	}
	return &Planner{cfg: cfg.withDefaults(), self: self}, nil
}

// Step decides what to do given the view at logical time now.
func (p *Planner) Step(now time.Duration, v View) Decision {
	var d Decision
	p.trackLeader(now, &v)
	if err := p.exitReason(&v); err != nil {
		p.lead = nil
		return Decision{Exit: err}
	}
	d.Query = p.wantQuery(now, &v)
	if v.Cluster == 0 || !v.Raft.Leader {
		p.lead = nil
		return d
	}
	if p.lead == nil || p.lead.term != v.Raft.Term {
		p.lead = newLeaderState(v.Raft.Term, now)
	}
	p.lead.observe(now, p.self, &v, p.cfg.ActiveWindow)
	p.planLeader(now, &v, &d)
	return d
}

// trackLeader records since when this node has known no leader.
func (p *Planner) trackLeader(now time.Duration, v *View) {
	if v.Raft.Leader || v.Raft.Lead != 0 {
		p.noLeader = false
		return
	}
	if !p.noLeader {
		p.noLeader, p.noLeaderSince = true, now
	}
}

func (p *Planner) leaderlessFor(now time.Duration) time.Duration {
	if !p.noLeader {
		return 0
	}
	return now - p.noLeaderSince
}

// exitReason applies the rules under which a node stops itself:
//
//   - its own applied log removed it;
//   - a member of its own applied configuration says it applied this node's
//     removal (an attributable notice, never gossip): removal is committed
//     state and ids are never reused, so one such notice is proof;
//   - while it is not (yet) in its own configuration (a joining node whose
//     addition it has not applied), a member of the cluster it joins says
//     so, as shown by that member's own signed, unexpired entry;
//
// A node never stops because a leader's gossip omits it, because a peer
// does not know it (a new member may not be known everywhere yet), or on
// the word of a member of another cluster (one recovered from ours: its
// survivors are restarted by the operator, see PlanRecovery).
func (p *Planner) exitReason(v *View) error {
	if v.Raft.WasRemoved(p.self) {
		return fmt.Errorf("%w: member %s applied its own removal", ErrRemoved, p.self)
	}
	selfMember := v.Raft.IsMember(p.self)
	for _, n := range v.Notices {
		if n.Kind != NoticeRemoved || n.From == p.self || n.From == 0 {
			continue
		}
		switch {
		case selfMember && v.Raft.IsMember(n.From) && n.Cluster == v.Cluster:
			return fmt.Errorf("%w: member %s says it applied the removal of %s", ErrRemoved, n.From, p.self)
		case !selfMember && v.Cluster != 0 && n.Cluster == v.Cluster && p.vouched(v, n.From):
			return fmt.Errorf("%w: member %s of cluster %s says it applied the removal of %s", ErrRemoved, n.From, v.Cluster, p.self)
		}
	}
	return nil
}

// vouched reports whether id's own signed, unexpired entry says it is a
// member of our cluster.
func (p *Planner) vouched(v *View, id ids.MemberID) bool {
	for _, pr := range v.Peers {
		if pr.ID == id {
			return !pr.Expired && pr.Cluster == v.Cluster && (pr.Role == RoleVoter || pr.Role == RoleLearner || pr.Role == RoleLeaving)
		}
	}
	return false
}

// wantQuery: a node in a cluster that has known no leader for QueryAfter
// asks whether it was removed, at most once per QueryAfter. That covers a
// member cut off while the cluster removed it (raft never tells it: a
// removed member receives no more entries) and a joining node that was
// added and removed before it heard from the leader.
func (p *Planner) wantQuery(now time.Duration, v *View) bool {
	if v.Cluster == 0 || p.leaderlessFor(now) < p.cfg.QueryAfter {
		return false
	}
	if p.queried && now-p.lastQuery < p.cfg.QueryAfter {
		return false
	}
	p.queried, p.lastQuery = true, now
	return true
}

// planLeader applies the leader's rules, in order of urgency: hand over
// leadership when leaving; never start a change while one is pending or
// without an active quorum; fix the voters (replace, remove, grow); remove
// learners that left or died; add joining nodes as learners.
func (p *Planner) planLeader(now time.Duration, v *View, d *Decision) {
	peers := p.peerIndex(v)
	p.observeCatchUp(now, v, peers)
	if v.Leaving {
		p.planLeave(now, v, peers, d)
		return
	}
	if v.Raft.ConfChangePending {
		d.Waiting = "a membership change is in progress"
		return
	}
	active := 0
	for _, id := range v.Raft.Voters {
		if id == p.self || p.lead.active(id, now, p.cfg.ActiveWindow) {
			active++
		}
	}
	if q := quorum(len(v.Raft.Voters)); active < q {
		d.Waiting = fmt.Sprintf("only %d of %d voters active (%d needed); no membership change could commit", active, len(v.Raft.Voters), q)
		return
	}
	var waiting []string
	if c, why := p.planVoters(now, v, peers); !c.IsZero() {
		d.Change = c
		return
	} else if why != "" {
		waiting = append(waiting, why)
	}
	if c := p.planLearnerRemoval(now, v, peers); !c.IsZero() {
		d.Change = c
		return
	}
	c, why := p.planAddition(v, peers)
	if !c.IsZero() {
		d.Change = c
		return
	}
	if why != "" {
		waiting = append(waiting, why)
	}
	d.Waiting = strings.Join(waiting, "; ")
}

// peerIndex maps the peers of our cluster by id (expired ones included).
func (p *Planner) peerIndex(v *View) map[ids.MemberID]*Peer {
	out := make(map[ids.MemberID]*Peer, len(v.Peers))
	for i := range v.Peers {
		pr := &v.Peers[i]
		if pr.ID != 0 && pr.ID != p.self && pr.Cluster == v.Cluster {
			out[pr.ID] = pr
		}
	}
	return out
}

// leaving reports whether id's own unexpired entry asks to be removed.
func leaving(peers map[ids.MemberID]*Peer, id ids.MemberID) bool {
	pr := peers[id]
	return pr != nil && !pr.Expired && pr.Role == RoleLeaving
}

// planLeave: a leaving leader hands leadership to another voter (the new
// leader then replaces it). A leaving sole voter hands the cluster to a
// caught-up learner in one joint change that promotes the learner and
// removes itself, so the cluster keeps one (odd) voter; with no such
// learner it just stops.
func (p *Planner) planLeave(now time.Duration, v *View, peers map[ids.MemberID]*Peer, d *Decision) {
	if d.TransferTo = p.transferTarget(now, v, peers); d.TransferTo != 0 {
		return
	}
	if len(v.Raft.Voters) > 1 {
		d.Waiting = "leaving, but no active voter can take over leadership"
		return
	}
	if v.Raft.ConfChangePending {
		return
	}
	if ready := p.readyLearners(now, v); len(ready) > 0 {
		d.Change = Change{
			Ops:    []Op{{OpPromote, ready[0]}, {OpRemove, p.self}},
			Reason: fmt.Sprintf("sole voter %s leaving: hands over to learner %s", p.self, ready[0]),
		}
	}
}

// transferTarget picks the active voter, not leaving, with the highest
// match index to take over from a leaving leader (0: none).
func (p *Planner) transferTarget(now time.Duration, v *View, peers map[ids.MemberID]*Peer) ids.MemberID {
	var best ids.MemberID
	var bestMatch uint64
	for _, id := range v.Raft.Voters {
		if id == p.self || leaving(peers, id) || !p.lead.active(id, now, p.cfg.ActiveWindow) {
			continue
		}
		if m := v.Raft.Progress[id].Match; best == 0 || m > bestMatch {
			best, bestMatch = id, m
		}
	}
	return best
}

// planLearnerRemoval removes one learner that asked to leave, or else one
// the leader has not heard from for DeadMemberTimeout (this covers a node
// that was added but never acknowledged anything, such as a forged or
// stuck joiner). Learners do not count for quorum, so the leader's own
// evidence suffices.
func (p *Planner) planLearnerRemoval(now time.Duration, v *View, peers map[ids.MemberID]*Peer) Change {
	for _, id := range v.Raft.Learners {
		if id != p.self && leaving(peers, id) {
			return Change{Ops: []Op{{OpRemove, id}}, Reason: fmt.Sprintf("learner %s is leaving", id)}
		}
	}
	for _, id := range v.Raft.Learners {
		if id == p.self {
			continue
		}
		if s := p.lead.silentFor(id, now); s >= p.cfg.DeadMemberTimeout {
			return Change{Ops: []Op{{OpRemove, id}}, Reason: fmt.Sprintf("learner %s silent for %v", id, s.Round(time.Millisecond))}
		}
	}
	return Change{}
}

// planAddition adds one joining node as a learner: only a node that asks to
// join our cluster in its own unexpired entry, that our own probes reach
// now, and that was never removed (ids are never reused, so a removed id
// asking again is a stale or replayed entry).
func (p *Planner) planAddition(v *View, peers map[ids.MemberID]*Peer) (Change, string) {
	var joiners []ids.MemberID
	for id, pr := range peers {
		if pr.Role == RoleJoining && pr.Live && !pr.Expired && !v.Raft.IsMember(id) && !v.Raft.WasRemoved(id) {
			joiners = append(joiners, id)
		}
	}
	if len(joiners) == 0 {
		return Change{}, ""
	}
	slices.Sort(joiners)
	if len(v.Raft.Learners) >= p.cfg.MaxLearners {
		return Change{}, fmt.Sprintf("%d nodes ask to join but the cluster has %d learners already (the cap)", len(joiners), len(v.Raft.Learners))
	}
	return Change{Ops: []Op{{OpAddLearner, joiners[0]}}, Reason: fmt.Sprintf("node %s asks to join", joiners[0])}, ""
}
