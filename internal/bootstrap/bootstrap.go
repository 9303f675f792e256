// Package bootstrap decides, from gossiped state alone, how nodes that meet on
// a mesh form exactly one Raft cluster, and when a node should join an
// existing cluster instead.
//
// Every node runs a [Bootstrapper] and publishes its [State] to every other
// node (meshkv gossips it in its signed transport entry). The protocol is a
// one-round promise scheme:
//
//   - A node that sees at least InitialClusterSize seeking nodes (itself
//     included), and has the smallest member id among them, becomes a
//     founder: it publishes a [Proposal] naming a ballot (its id and a fresh
//     nonce) and the members it chose (itself and the next smallest seekers).
//   - Every other seeking node that sees a proposal promises it (publishes
//     the ballot), whether it was chosen as a member or not. It holds at most
//     one promise; among several proposals it takes the one with the smallest
//     founder id. A founder that sees a smaller founder's proposal withdraws
//     its own and promises that one.
//   - When every seeking node the founder sees shows its ballot, the founder
//     forms the cluster: it starts Raft with exactly the chosen members and
//     publishes the cluster id derived from the ballot. A chosen member that
//     sees any node show that cluster id forms too, with the same member list;
//     a promiser that was not chosen joins that cluster.
//   - A founder withdraws its proposal (before forming only) if a seeker it
//     sees promised another ballot, a chosen member vanished, or a node in a
//     cluster appeared (it then joins that cluster); a node releases its
//     promise when the founder withdrew it, or when the founder has been gone
//     for ReleaseAfter and no node shows the ballot's cluster id.
//
// Gone means absent or expired: the transport expires an entry that its
// process stopped refreshing, and the protocol ignores expired peers
// entirely. So a founder or a seeker that crashed at any point stops
// counting once its entry expires (a founder's promisers release after
// ReleaseAfter more), and the nodes still alive, with any that arrive later,
// form a cluster; before entries expired, a crashed founder held its
// promisers for ever.
//
// Listed peers. A node configured with peer addresses (ListedPeers) neither
// founds nor promises (so it never forms a cluster, alone or with others)
// before it has heard, over a direct link, from the process at every listed
// address, with that process's entry present and unexpired; a listed peer in
// a cluster makes it join that cluster. So nodes restarted with new ids that
// see each other but not the cluster they listed never found a second one:
// they wait, and Waiting says for what. An operator who lists a peer that
// never comes back must change the list.
//
// Safety: a cluster forms only when every seeker its founder sees has promised
// its ballot, and no node holds two promises, so two clusters can never share
// a member, and a node that could found a competing cluster has promised not
// to; every member of one ballot starts Raft with the same peer list, so the
// ballot yields one Raft cluster. Nodes that were not chosen, and nodes that
// arrive later, see a published cluster id and join that cluster (the leader
// adds them as learners). A cluster recovered from a lost quorum names the
// cluster it supersedes; joining nodes never choose a superseded cluster
// while its successor is visible.
//
// The residual risk is a promise released by timeout: if a founder forms
// and then stays unreachable from a member for its entry lifetime plus
// ReleaseAfter while no other member that formed is visible either (a
// partition during bootstrap), that member may later help found a second
// cluster, unless it lists the founder's address (then it waits for it).
//
// The package is pure logic: no goroutines, no clock of its own (the caller
// passes the time), no I/O.
package bootstrap

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
)

// Ballot names one founding attempt.
type Ballot struct {
	Founder ids.MemberID `json:"f"`
	Nonce   uint64       `json:"n"`
}

// IsZero reports whether b names no attempt.
func (b Ballot) IsZero() bool { return b == Ballot{} }

// ClusterID is the cluster id a ballot yields when it forms: the same on
// every node, nonzero, and distinct across ballots with overwhelming
// probability.
func (b Ballot) ClusterID() ids.ClusterID {
	h := fnv.New64a()
	var buf [16]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(b.Founder))
	binary.BigEndian.PutUint64(buf[8:], b.Nonce)
	h.Write(buf[:])
	if id := h.Sum64(); id != 0 {
		return ids.ClusterID(id)
	}
	return 1
}

// Proposal is a founder's offer: its ballot and the members it chose.
type Proposal struct {
	Ballot  Ballot         `json:"b"`
	Members []ids.MemberID `json:"m"` // sorted, founder included
}

// State is what a node publishes about its bootstrap (meshkv gossips it as
// JSON inside its transport entry).
type State struct {
	RaftID    ids.MemberID  `json:"id"`
	ClusterID ids.ClusterID `json:"c,omitempty"` // nonzero once the node formed or joined a cluster
	// Supersedes is set by the members of a cluster recovered from a lost
	// quorum: the cluster it replaced.
	Supersedes ids.ClusterID `json:"s,omitempty"`
	Promise    *Proposal     `json:"p,omitempty"` // the proposal this node promised
	Founding   *Proposal     `json:"o,omitempty"` // this node's own standing proposal
}

// Peer is another node of the same cluster name as the caller's transport
// sees it.
type Peer struct {
	State State
	// Expired reports that the peer's entry was not refreshed for the
	// transport's entry lifetime: its process is gone or cut off from us.
	// The protocol treats it as absent.
	Expired bool
}

// View is the input of one Step.
type View struct {
	// Peers are the other nodes, expired ones included (and flagged).
	Peers []Peer
	// Heard maps each address of Config.ListedPeers to the member id of the
	// process that answered there most recently over a direct link (absent
	// or 0: none yet). An address that answered with our own id is
	// ourselves.
	Heard map[string]ids.MemberID
}

// Decision is what the caller must do after a Step.
type Decision struct {
	// Form, when nonzero, means: start Raft as an initial member of cluster
	// ClusterID with exactly Members as voters.
	ClusterID ids.ClusterID
	Members   []ids.MemberID
	// Join means: start Raft with no peers and wait to be added to cluster
	// ClusterID by its leader.
	Join bool
	// Conflict lists cluster ids other than the chosen one that were seen
	// under the same cluster name (never merged: the caller reports them).
	Conflict []ids.ClusterID
}

// Config sets the protocol's parameters.
type Config struct {
	InitialClusterSize int           // nodes needed to form a cluster (>= 1)
	Settle             time.Duration // minimum time seeking before founding, so that gossip from existing clusters arrives first
	ReleaseAfter       time.Duration // how long a founder may be gone before its promise is released
	// NeedPeer: do not found before at least one other node was seen. For
	// callers that cannot tell which process answered at which listed
	// address; ListedPeers is the stronger rule.
	NeedPeer bool
	// ListedPeers are the configured peer addresses: never found or promise
	// before every one of them was heard (see the package doc).
	ListedPeers []string
	Nonce       func() uint64 // source of ballot nonces
}

// Bootstrapper is one node's side of the protocol. It is not safe for
// concurrent use; the caller serializes Step calls.
type Bootstrapper struct {
	cfg          Config
	self         State
	started      time.Time
	sawPeer      bool
	founderGone  time.Time // when the promised founder was last seen missing (zero: present)
	done         bool
	lastDecision Decision
	waiting      string
}

// New returns the bootstrapper of the node with member id id, seeking since
// now.
func New(id ids.MemberID, cfg Config, now time.Time) *Bootstrapper {
	if cfg.InitialClusterSize < 1 {
		cfg.InitialClusterSize = 1
	}
	cfg.ListedPeers = slices.Clone(cfg.ListedPeers)
	return &Bootstrapper{cfg: cfg, self: State{RaftID: id}, started: now}
}

// State returns what the node should publish now.
func (b *Bootstrapper) State() State { return b.self }

// Done reports whether the node has formed or joined a cluster.
func (b *Bootstrapper) Done() bool { return b.done }

// Waiting says what the node waits for before it can found, promise or
// form ("" once done). The text changes only when the reason does: log it
// when it changes.
func (b *Bootstrapper) Waiting() string { return b.waiting }

// Step advances the protocol given the current view of the other nodes
// (without this node). It returns a decision once, when the node forms or
// joins a cluster; afterwards it returns that decision again with any new
// conflicts. Publish State after every Step.
func (b *Bootstrapper) Step(now time.Time, v View) (Decision, bool) {
	byID := make(map[ids.MemberID]State, len(v.Peers))
	for _, p := range v.Peers {
		if !p.Expired && p.State.RaftID != 0 && p.State.RaftID != b.self.RaftID {
			byID[p.State.RaftID] = p.State
		}
	}
	if len(byID) > 0 {
		b.sawPeer = true
	}
	if b.done {
		d := b.lastDecision
		d.Conflict = conflicts(byID, b.self.ClusterID)
		return d, false
	}

	// A member of a proposal that has formed anywhere forms with it.
	if d, ok := b.formedElsewhere(byID); ok {
		return b.finish(d, byID), true
	}

	// A founder named by a smaller founder's proposal yields to it, so that
	// founding converges on the smallest id.
	if b.self.Founding != nil && b.bestProposal(byID) != nil {
		b.self.Founding = nil
	}

	switch {
	case b.self.Founding != nil:
		if d, ok := b.stepFounder(byID); ok {
			return b.finish(d, byID), true
		}
	case b.self.Promise != nil:
		b.stepPromised(now, byID)
	}

	if b.self.Founding == nil && b.self.Promise == nil {
		// An existing cluster wins over founding a new one.
		if id := joinTarget(byID); id != 0 {
			return b.finish(Decision{ClusterID: id, Join: true}, byID), true
		}
		if why := b.listedWait(byID, v.Heard); why != "" {
			b.waiting = why
			return Decision{}, false
		}
		if p := b.bestProposal(byID); p != nil {
			b.self.Promise = p
			b.founderGone = time.Time{}
		} else {
			b.maybeFound(now, byID)
			if b.self.Founding != nil {
				if d, ok := b.stepFounder(byID); ok {
					return b.finish(d, byID), true
				}
			}
		}
	}
	b.waiting = b.describeWait(now, byID)
	return Decision{}, false
}

// Recovered records that the node's cluster was recovered from a lost
// quorum as cluster id, superseding the cluster it was in: the node
// publishes both, so that joining nodes choose id over the superseded one.
func (b *Bootstrapper) Recovered(id ids.ClusterID) {
	b.self.Supersedes, b.self.ClusterID = b.self.ClusterID, id
	b.done = true
	b.lastDecision = Decision{ClusterID: id}
}

func (b *Bootstrapper) finish(d Decision, byID map[ids.MemberID]State) Decision {
	b.done = true
	b.waiting = ""
	b.self.ClusterID = d.ClusterID
	b.lastDecision = d
	b.lastDecision.Conflict = nil
	d.Conflict = conflicts(byID, d.ClusterID)
	return d
}

// listedWait returns why the listed-peer rule forbids founding and
// promising now ("" if it allows them).
func (b *Bootstrapper) listedWait(byID map[ids.MemberID]State, heard map[string]ids.MemberID) string {
	var unheard, gone, inCluster []string
	for _, addr := range b.cfg.ListedPeers {
		id := heard[addr]
		switch s, ok := byID[id]; {
		case id == b.self.RaftID:
		case id == 0:
			unheard = append(unheard, addr)
		case !ok:
			gone = append(gone, fmt.Sprintf("%s (member %s)", addr, id))
		case s.ClusterID != 0:
			inCluster = append(inCluster, fmt.Sprintf("%s (member %s of cluster %s)", addr, id, s.ClusterID))
		}
	}
	var why []string
	if len(unheard) > 0 {
		why = append(why, "not yet heard from listed peers "+strings.Join(unheard, ", "))
	}
	if len(gone) > 0 {
		why = append(why, "listed peers gone or expired: "+strings.Join(gone, ", "))
	}
	if len(inCluster) > 0 {
		why = append(why, "listed peers in a cluster: "+strings.Join(inCluster, ", "))
	}
	if len(why) == 0 {
		return ""
	}
	return "not founding a cluster: " + strings.Join(why, "; ")
}

// describeWait says what a seeking node waits for.
func (b *Bootstrapper) describeWait(now time.Time, byID map[ids.MemberID]State) string {
	switch {
	case b.self.Founding != nil:
		return fmt.Sprintf("founding cluster %s with %s: waiting for every seeking node to promise", b.self.Founding.Ballot.ClusterID(), fmtIDs(b.self.Founding.Members))
	case b.self.Promise != nil:
		return fmt.Sprintf("promised founder %s's cluster %s: waiting for it to form", b.self.Promise.Ballot.Founder, b.self.Promise.Ballot.ClusterID())
	case now.Sub(b.started) < b.cfg.Settle:
		return "listening for an existing cluster before founding one"
	case b.cfg.NeedPeer && !b.sawPeer:
		return "waiting to see another node (peers are configured)"
	}
	seekers := 1
	for _, s := range byID {
		if s.ClusterID == 0 {
			seekers++
		}
	}
	if seekers < b.cfg.InitialClusterSize {
		return fmt.Sprintf("waiting for %d seeking nodes to form a cluster, %d seen (this one included)", b.cfg.InitialClusterSize, seekers)
	}
	return "waiting for a smaller node to found the cluster"
}

// formedElsewhere: our promised ballot (or our own proposal) has formed on
// some node that shows its cluster id.
func (b *Bootstrapper) formedElsewhere(byID map[ids.MemberID]State) (Decision, bool) {
	p := b.self.Promise
	if p == nil {
		p = b.self.Founding
	}
	if p == nil {
		return Decision{}, false
	}
	cid := p.Ballot.ClusterID()
	for _, s := range byID {
		if s.ClusterID == cid {
			if !slices.Contains(p.Members, b.self.RaftID) {
				return Decision{ClusterID: cid, Join: true}, true
			}
			return Decision{ClusterID: cid, Members: slices.Clone(p.Members)}, true
		}
	}
	return Decision{}, false
}

// stepFounder forms when every seeker in view promised our ballot, and
// withdraws when that cannot happen.
func (b *Bootstrapper) stepFounder(byID map[ids.MemberID]State) (Decision, bool) {
	p := b.self.Founding
	for _, m := range p.Members {
		if s, ok := byID[m]; m != b.self.RaftID && (!ok || s.ClusterID != 0) {
			b.self.Founding = nil // a chosen member vanished or is in a cluster already
			return Decision{}, false
		}
	}
	all := true
	for _, s := range byID {
		switch {
		case s.ClusterID != 0:
			// A cluster exists (it formed before our proposal was seen): joining
			// it wins over founding another.
			b.self.Founding = nil
			return Decision{}, false
		case s.Promise == nil:
			all = false
		case s.Promise.Ballot != p.Ballot:
			b.self.Founding = nil
			return Decision{}, false
		}
	}
	if !all {
		return Decision{}, false
	}
	return Decision{ClusterID: p.Ballot.ClusterID(), Members: slices.Clone(p.Members)}, true
}

// stepPromised keeps or releases our promise.
func (b *Bootstrapper) stepPromised(now time.Time, byID map[ids.MemberID]State) {
	p := b.self.Promise
	f, ok := byID[p.Ballot.Founder]
	if ok {
		b.founderGone = time.Time{}
		if f.Founding == nil || f.Founding.Ballot != p.Ballot {
			b.self.Promise = nil // withdrawn
		}
		return
	}
	if b.founderGone.IsZero() {
		b.founderGone = now
	}
	if now.Sub(b.founderGone) >= b.cfg.ReleaseAfter {
		b.self.Promise = nil
		b.founderGone = time.Time{}
	}
}

// bestProposal returns the standing proposal with the smallest founder id,
// if any, or, when we are founding, only one from a founder smaller than us.
func (b *Bootstrapper) bestProposal(byID map[ids.MemberID]State) *Proposal {
	var best *Proposal
	for _, s := range byID {
		p := s.Founding
		if p == nil || s.ClusterID != 0 || b.self.Founding != nil && p.Ballot.Founder >= b.self.RaftID {
			continue
		}
		if best == nil || p.Ballot.Founder < best.Ballot.Founder {
			best = p
		}
	}
	if best == nil {
		return nil
	}
	cp := *best
	cp.Members = slices.Clone(best.Members)
	return &cp
}

// maybeFound starts a proposal when we are the smallest seeker in view, no
// seeker holds a promise, and enough seekers are present.
func (b *Bootstrapper) maybeFound(now time.Time, byID map[ids.MemberID]State) {
	if now.Sub(b.started) < b.cfg.Settle || (b.cfg.NeedPeer && !b.sawPeer) {
		return
	}
	seekers := []ids.MemberID{b.self.RaftID}
	for id, s := range byID {
		if s.ClusterID != 0 {
			continue
		}
		if id < b.self.RaftID || s.Promise != nil || s.Founding != nil {
			return // a smaller seeker founds, or another attempt is under way
		}
		seekers = append(seekers, id)
	}
	n := b.cfg.InitialClusterSize
	if len(seekers) < n {
		return
	}
	slices.Sort(seekers)
	b.self.Founding = &Proposal{
		Ballot:  Ballot{Founder: b.self.RaftID, Nonce: b.cfg.Nonce()},
		Members: slices.Clone(seekers[:n]),
	}
}

// joinTarget picks the cluster to join among those in view: the smallest id
// that no visible cluster supersedes (0: none).
func joinTarget(byID map[ids.MemberID]State) ids.ClusterID {
	superseded := map[ids.ClusterID]bool{}
	for _, s := range byID {
		if s.ClusterID != 0 && s.Supersedes != 0 {
			superseded[s.Supersedes] = true
		}
	}
	var best ids.ClusterID
	for _, s := range byID {
		if c := s.ClusterID; c != 0 && !superseded[c] && (best == 0 || c < best) {
			best = c
		}
	}
	return best
}

func conflicts(byID map[ids.MemberID]State, ours ids.ClusterID) []ids.ClusterID {
	var out []ids.ClusterID
	for _, s := range byID {
		if c := s.ClusterID; c != 0 && c != ours && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, cmp.Compare)
	return out
}

func fmtIDs(list []ids.MemberID) string {
	parts := make([]string, len(list))
	for i, id := range list {
		parts[i] = id.String()
	}
	return strings.Join(parts, ",")
}
