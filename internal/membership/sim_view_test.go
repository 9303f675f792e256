package membership

import (
	"cmp"
	"slices"

	"github.com/meshkv/meshkv/internal/ids"
)

// gossip refreshes the entries each process holds of the processes in its
// group.
func (s *sim) gossip() {
	for _, q := range s.procs {
		if !q.alive {
			continue
		}
		role, unr := s.role(q), s.unreachableOf(q)
		for _, p := range s.procs {
			if p != q && p.alive && s.group[p.slot] == s.group[q.slot] {
				if e := p.entries[q.id]; e != nil {
					e.role, e.unreachable, e.heard = role, unr, s.now
				} else {
					p.entries[q.id] = &simEntry{role: role, unreachable: unr, heard: s.now}
				}
			}
		}
	}
	// Tombstones of long-expired entries are eventually dropped.
	for _, p := range s.procs {
		if p.alive {
			for id, e := range p.entries {
				if s.now-e.heard > 3*simEntryTTL {
					delete(p.entries, id)
				}
			}
		}
	}
}

// unreachableOf is what q states it cannot reach: the members of its
// configuration it is cut from and whose entries it still holds unexpired,
// as the transport does (a liar: everyone it knows).
func (s *sim) unreachableOf(q *simProc) []ids.MemberID {
	var out []ids.MemberID
	if q.liar {
		known := map[ids.MemberID]bool{}
		for id := range q.entries {
			known[id] = true
		}
		for _, id := range append(slices.Clone(q.cfgV), q.cfgL...) {
			known[id] = id != q.id
		}
		return sortedSet(known)
	}
	for _, id := range append(slices.Clone(q.cfgV), q.cfgL...) {
		if e := q.entries[id]; id != q.id && !s.connected(q.id, id) && e != nil && s.now-e.heard <= simEntryTTL {
			out = append(out, id)
		}
	}
	return out
}

func (s *sim) view(p *simProc) View {
	v := View{Cluster: testCluster, Leaving: p.leaving, Notices: p.notices}
	p.notices = nil
	v.Raft = Raft{Term: p.term, Voters: slices.Clone(p.cfgV), Learners: slices.Clone(p.cfgL), Removed: idSet(p.removed).has}
	if s.leader != 0 && s.isMember(p.id) && s.connected(p.id, s.leader) {
		v.Raft.Lead = s.leader
	}
	if s.leader == p.id {
		v.Raft.Leader, v.Raft.Commit, v.Raft.ConfChangePending = true, s.commit, s.pending != nil
		v.Raft.Progress = map[ids.MemberID]Progress{}
		for _, id := range append(slices.Clone(s.voters), s.learners...) {
			q := s.byID[id]
			v.Raft.Progress[id] = Progress{Match: q.match, RecentActive: id == p.id || q.lastAck == s.now && s.rng.IntN(20) != 0}
		}
	}
	for id, e := range p.entries {
		v.Peers = append(v.Peers, Peer{
			ID: id, Cluster: testCluster, Live: s.connected(p.id, id), Expired: s.now-e.heard > simEntryTTL,
			Role: e.role, Unreachable: e.unreachable,
		})
	}
	slices.SortFunc(v.Peers, func(a, b Peer) int { return cmp.Compare(a.ID, b.ID) })
	return v
}
