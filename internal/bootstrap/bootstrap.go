// Package bootstrap decides, from gossiped state alone, how nodes that meet on
// a mesh form exactly one Raft cluster, and when a node should join an
// existing cluster instead.
//
// Every node runs a [Bootstrapper] and publishes its [State] to every other
// node (meshkv gossips it as mesh metadata). The protocol is a one-round
// promise scheme:
//
//   - A node that sees at least InitialClusterSize seeking nodes (itself
//     included), and has the smallest raft id among them, becomes a founder: it
//     publishes a [Proposal] naming a ballot (its id and a fresh nonce) and the
//     members it chose (itself and the next smallest seekers).
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
//     cluster appeared (it then joins that cluster); a node releases
//     its promise when the founder withdrew it, or when the founder has been
//     gone for ReleaseAfter and no node shows the ballot's cluster id.
//
// Safety: a cluster forms only when every seeker its founder sees has promised
// its ballot, and no node holds two promises, so two clusters can never share
// a member, and a node that could found a competing cluster has promised not
// to; every member of one ballot starts Raft with the same peer list, so the
// ballot yields one Raft cluster. Nodes that were not chosen, and nodes that
// arrive later, see a published cluster id and join that cluster (the leader
// adds them as learners).
//
// The one residual risk is a promise released by timeout: if a founder forms
// and then stays unreachable from a member for ReleaseAfter while no other
// member that formed is visible either (a partition during bootstrap), that
// member may later help found a second cluster. ReleaseAfter is long (tens of
// seconds) so that only a founder that died before forming releases its
// promisers in practice.
//
// The package is pure logic: no goroutines, no clock of its own (the caller
// passes the time), no I/O.
package bootstrap

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"slices"
	"time"
)

// Ballot names one founding attempt.
type Ballot struct {
	Founder uint64 `json:"f"`
	Nonce   uint64 `json:"n"`
}

// IsZero reports whether b names no attempt.
func (b Ballot) IsZero() bool { return b == Ballot{} }

// ClusterID is the cluster id a ballot yields when it forms: the same on
// every node, nonzero, and distinct across ballots with overwhelming
// probability.
func (b Ballot) ClusterID() uint64 {
	h := fnv.New64a()
	var buf [16]byte
	binary.BigEndian.PutUint64(buf[:8], b.Founder)
	binary.BigEndian.PutUint64(buf[8:], b.Nonce)
	h.Write(buf[:])
	if id := h.Sum64(); id != 0 {
		return id
	}
	return 1
}

// Proposal is a founder's offer: its ballot and the members it chose.
type Proposal struct {
	Ballot  Ballot   `json:"b"`
	Members []uint64 `json:"m"` // raft ids, sorted, founder included
}

// State is what a node publishes about its bootstrap (meshkv gossips it as
// JSON inside its mesh metadata).
type State struct {
	RaftID    uint64    `json:"id"`
	ClusterID uint64    `json:"c,omitempty"` // nonzero once the node formed or joined a cluster
	Promise   *Proposal `json:"p,omitempty"` // the proposal this node promised
	Founding  *Proposal `json:"o,omitempty"` // this node's own standing proposal
}

// Peer is another node as the caller currently sees it: only nodes of the
// same cluster name, and only while the mesh (or the caller's probes) report
// them present.
type Peer struct {
	State State
}

// Decision is what the caller must do after a Step.
type Decision struct {
	// Form, when nonzero, means: start Raft as an initial member of cluster
	// ClusterID with exactly Members as voters.
	ClusterID uint64
	Members   []uint64
	// Join means: start Raft with no peers and wait to be added to cluster
	// ClusterID by its leader.
	Join bool
	// Conflict lists cluster ids other than the chosen one that were seen
	// under the same cluster name (never merged: the caller reports them).
	Conflict []uint64
}

// Config sets the protocol's parameters.
type Config struct {
	InitialClusterSize int           // nodes needed to form a cluster (>= 1)
	Settle             time.Duration // minimum time seeking before founding, so that gossip from existing clusters arrives first
	ReleaseAfter       time.Duration // how long a founder may be gone before its promise is released
	NeedPeer           bool          // do not found before at least one other node was seen (initial peers were configured)
	Nonce              func() uint64 // source of ballot nonces
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
}

// New returns the bootstrapper of the node with raft id id, seeking since now.
func New(id uint64, cfg Config, now time.Time) *Bootstrapper {
	if cfg.InitialClusterSize < 1 {
		cfg.InitialClusterSize = 1
	}
	return &Bootstrapper{cfg: cfg, self: State{RaftID: id}, started: now}
}

// State returns what the node should publish now.
func (b *Bootstrapper) State() State { return b.self }

// Done reports whether the node has formed or joined a cluster.
func (b *Bootstrapper) Done() bool { return b.done }

// Step advances the protocol given the current view of the other nodes
// (without this node). It returns a decision once, when the node forms or
// joins a cluster; afterwards it returns that decision again with any new
// conflicts. Publish State after every Step.
func (b *Bootstrapper) Step(now time.Time, peers []Peer) (Decision, bool) {
	if len(peers) > 0 {
		b.sawPeer = true
	}
	if b.done {
		d := b.lastDecision
		d.Conflict = conflicts(peers, b.self.ClusterID)
		return d, false
	}
	byID := make(map[uint64]State, len(peers))
	for _, p := range peers {
		if p.State.RaftID != 0 && p.State.RaftID != b.self.RaftID {
			byID[p.State.RaftID] = p.State
		}
	}

	// A member of a proposal that has formed anywhere forms with it.
	if d, ok := b.formedElsewhere(byID); ok {
		return b.finish(d, peers), true
	}

	// A founder named by a smaller founder's proposal yields to it, so that
	// founding converges on the smallest id.
	if f := b.self.Founding; f != nil {
		if p := b.bestProposal(byID); p != nil {
			b.self.Founding = nil
		}
	}

	switch {
	case b.self.Founding != nil:
		if d, ok := b.stepFounder(byID); ok {
			return b.finish(d, peers), true
		}
	case b.self.Promise != nil:
		b.stepPromised(now, byID)
	}

	if b.self.Founding == nil && b.self.Promise == nil {
		// An existing cluster wins over founding a new one.
		if id := smallestCluster(byID); id != 0 {
			return b.finish(Decision{ClusterID: id, Join: true}, peers), true
		}
		if p := b.bestProposal(byID); p != nil {
			b.self.Promise = p
			b.founderGone = time.Time{}
		} else {
			b.maybeFound(now, byID)
			if b.self.Founding != nil {
				if d, ok := b.stepFounder(byID); ok {
					return b.finish(d, peers), true
				}
			}
		}
	}
	return Decision{}, false
}

func (b *Bootstrapper) finish(d Decision, peers []Peer) Decision {
	b.done = true
	b.self.ClusterID = d.ClusterID
	b.lastDecision = d
	b.lastDecision.Conflict = nil
	d.Conflict = conflicts(peers, d.ClusterID)
	return d
}

// formedElsewhere: our promised ballot (or our own proposal) has formed on
// some node that shows its cluster id.
func (b *Bootstrapper) formedElsewhere(byID map[uint64]State) (Decision, bool) {
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
func (b *Bootstrapper) stepFounder(byID map[uint64]State) (Decision, bool) {
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
func (b *Bootstrapper) stepPromised(now time.Time, byID map[uint64]State) {
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
func (b *Bootstrapper) bestProposal(byID map[uint64]State) *Proposal {
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
func (b *Bootstrapper) maybeFound(now time.Time, byID map[uint64]State) {
	if now.Sub(b.started) < b.cfg.Settle || (b.cfg.NeedPeer && !b.sawPeer) {
		return
	}
	seekers := []uint64{b.self.RaftID}
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

func smallestCluster(byID map[uint64]State) uint64 {
	var ids []uint64
	for _, s := range byID {
		if s.ClusterID != 0 {
			ids = append(ids, s.ClusterID)
		}
	}
	if len(ids) == 0 {
		return 0
	}
	return slices.MinFunc(ids, cmp.Compare[uint64])
}

func conflicts(peers []Peer, ours uint64) []uint64 {
	var out []uint64
	for _, p := range peers {
		if c := p.State.ClusterID; c != 0 && c != ours && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}
