package meshtransport

import "slices"

// PeerTarget is one configured peer address (Config.Peers) and who answers
// there.
type PeerTarget struct {
	Addr string
	// ID is the raft id of the node whose key the last link to Addr proved
	// (0 while no link to Addr was ever made). It stays after that link goes
	// down: the layer above checks whether the node is still around.
	ID MemberID
	// Self reports that Addr turned out to be this node.
	Self bool
	// Linked reports that a link to ID is up now.
	Linked bool
}

// PeerTargets reports, for every address of Config.Peers, the node that
// answered there. A node that must hear from every configured peer before
// it founds a cluster reads it (see internal/bootstrap).
func (t *Transport) PeerTargets() []PeerTarget {
	var out []PeerTarget
	for _, ti := range t.links.Targets() {
		if !slices.Contains(t.cfg.Peers, ti.Addr) {
			continue
		}
		pt := PeerTarget{Addr: ti.Addr, Self: ti.Self, Linked: ti.Linked}
		switch {
		case ti.Self:
			pt.ID = t.id.RaftID()
		case ti.HasKey:
			pt.ID = RaftIDOf(ti.Key)
		}
		out = append(out, pt)
	}
	return out
}

// PeerAddrs maps the raft id of this node and of every node whose gossip
// entry we hold to the mesh address it advertises there (its own signed
// claim: where its links accept connections). member list shows it as the
// member's peer URL.
func (t *Transport) PeerAddrs() map[MemberID]string {
	out := map[MemberID]string{}
	if t.advertise != "" {
		out[t.id.RaftID()] = t.advertise
	}
	for _, h := range t.gossip.live() {
		if h.e != nil && h.e.addr != "" {
			out[MemberID(h.e.meta.RaftID)] = h.e.addr
		}
	}
	return out
}
