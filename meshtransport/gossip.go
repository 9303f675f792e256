package meshtransport

import (
	"bytes"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weaveworks/mesh"
)

// Gossip state. Every node's entry spreads over mesh's gossip (the metadata
// channel). The merge rule, per mesh peer name: an entry is taken only if
// its signature verifies against its own key, that key maps to the name it
// is filed under (PeerNameOf), and its version is higher than the one held
// (or than the name's tombstone). A peer therefore speaks only for itself.
//
// Receivers note the local time at which they last took a newer version of
// an entry. An entry not refreshed for EntryTTL expires: it is removed, no
// longer gossiped nor dialled, and its name is tombstoned at that version
// for tombstoneTTLs*EntryTTL, so that copies still circulating do not bring
// it back. A node that is alive re-signs its entry with a new version every
// RefreshInterval and so never expires while its gossip gets through.

// tombstoneTTLs: tombstones last this many EntryTTLs.
const tombstoneTTLs = 10

// gossipData is an immutable set of verified entries handed to mesh as
// GossipData. Merge returns a new value and never modifies either operand,
// because mesh keeps gossip data in its senders and encodes it later on
// other goroutines.
type gossipData struct {
	entries map[PeerName]*entry
}

var _ mesh.GossipData = (*gossipData)(nil)

// Merge implements mesh.GossipData: per name, the higher version wins.
func (d *gossipData) Merge(other mesh.GossipData) mesh.GossipData {
	o, ok := other.(*gossipData)
	if !ok {
		return d
	}
	out := &gossipData{entries: make(map[PeerName]*entry, len(d.entries)+len(o.entries))}
	for n, e := range d.entries {
		out.entries[n] = e
	}
	for n, e := range o.entries {
		if cur, ok := out.entries[n]; !ok || e.version > cur.version {
			out.entries[n] = e
		}
	}
	return out
}

// Encode implements mesh.GossipData.
func (d *gossipData) Encode() [][]byte {
	names := make([]PeerName, 0, len(d.entries))
	for n := range d.entries {
		names = append(names, n)
	}
	slices.Sort(names)
	raws := make([][]byte, 0, len(names))
	for _, n := range names {
		raws = append(raws, d.entries[n].raw)
	}
	return encodeEntries(raws)
}

// held is an entry we hold and when we took it.
type held struct {
	e    *entry
	seen time.Time // local time we took this version
}

type tombstone struct {
	version uint64
	until   time.Time
}

// gossipState is every node's entry as we know it, ours included; it is the
// mesh.Gossiper of the metadata channel. Its callbacks take a mutex and
// verify signatures; they never block on anything else and never fail
// (an error would make mesh drop the connection).
type gossipState struct {
	id       *Identity
	ttl      time.Duration
	max      int    // entries held, ours excluded
	onChange func() // non-blocking signal, called after every change

	malformed atomic.Uint64 // undecodable messages and entries
	forged    atomic.Uint64 // entries whose signature or name did not match
	full      atomic.Uint64 // new names refused because max entries are held

	mu    sync.Mutex
	own   *entry
	peers map[PeerName]held
	dead  map[PeerName]tombstone
}

var _ mesh.Gossiper = (*gossipState)(nil)

func newGossipState(id *Identity, ttl time.Duration, maxEntries int, onChange func()) *gossipState {
	return &gossipState{
		id:       id,
		ttl:      ttl,
		max:      maxEntries,
		onChange: onChange,
		peers:    make(map[PeerName]held),
		dead:     make(map[PeerName]tombstone),
	}
}

// setOwn signs a new version of our entry, built by fill from the current
// one, and returns it as GossipData to broadcast.
func (s *gossipState) setOwn(fill func(e *entry)) *gossipData {
	s.mu.Lock()
	e := &entry{pub: s.id.PublicKey(), seal: s.id.SealKey()}
	if s.own != nil {
		*e = *s.own
		e.meta = s.own.meta.clone()
		e.unreachable = slices.Clone(s.own.unreachable)
	}
	fill(e)
	e.meta.RaftID = uint64(s.id.RaftID())
	e.version++
	signEntry(s.id, e)
	s.own = e
	s.mu.Unlock()
	s.onChange()
	return &gossipData{entries: map[PeerName]*entry{s.id.PeerName(): e}}
}

// ownEntry returns our current entry (nil before the first setOwn).
func (s *gossipState) ownEntry() *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.own
}

// live returns the entries of other nodes that have not expired.
func (s *gossipState) live() map[PeerName]held {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[PeerName]held, len(s.peers))
	for n, h := range s.peers {
		out[n] = h
	}
	return out
}

// expire removes entries not refreshed for the TTL (tombstoning them) and
// forgets old tombstones. It returns the names that expired.
func (s *gossipState) expire(now time.Time) []PeerName {
	s.mu.Lock()
	var gone []PeerName
	for n, h := range s.peers {
		if now.Sub(h.seen) > s.ttl {
			delete(s.peers, n)
			s.dead[n] = tombstone{version: h.e.version, until: now.Add(tombstoneTTLs * s.ttl)}
			gone = append(gone, n)
		}
	}
	for n, t := range s.dead {
		if now.After(t.until) {
			delete(s.dead, n)
		}
	}
	s.mu.Unlock()
	if len(gone) > 0 {
		s.onChange()
	}
	return gone
}

// merge takes the entries of one gossip message that are new to us and
// returns them as GossipData (nil if none). See the file comment for the
// rule.
func (s *gossipState) merge(msg []byte, now time.Time) *gossipData {
	raws, err := splitEntries(msg)
	if err != nil {
		s.malformed.Add(1)
		return nil
	}
	var delta map[PeerName]*entry
	for _, raw := range raws {
		e, err := decodeEntry(raw)
		if err != nil {
			s.malformed.Add(1)
			continue
		}
		name := e.name()
		if !s.wanted(name, e) {
			continue
		}
		// Verify outside the lock: it is the costly part.
		if !verifyEntry(e) {
			s.forged.Add(1)
			continue
		}
		e.raw = bytes.Clone(raw)
		if !s.take(name, e, now) {
			continue
		}
		if delta == nil {
			delta = make(map[PeerName]*entry)
		}
		delta[name] = e
	}
	if delta == nil {
		return nil
	}
	s.onChange()
	return &gossipData{entries: delta}
}

// wanted reports whether e would replace what we hold for name.
func (s *gossipState) wanted(name PeerName, e *entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name == s.id.PeerName() {
		return false // nobody but us speaks for us
	}
	if t, ok := s.dead[name]; ok && e.version <= t.version {
		return false
	}
	if h, ok := s.peers[name]; ok {
		return e.version > h.e.version
	}
	if len(s.peers) >= s.max {
		s.full.Add(1)
		return false
	}
	return true
}

// take stores a verified entry unless a newer one arrived meanwhile.
func (s *gossipState) take(name PeerName, e *entry, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.peers[name]; ok && e.version <= h.e.version {
		return false
	}
	if _, ok := s.peers[name]; !ok && len(s.peers) >= s.max {
		return false
	}
	delete(s.dead, name)
	s.peers[name] = held{e: e, seen: now}
	return true
}

func (s *gossipState) all() *gossipData {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := &gossipData{entries: make(map[PeerName]*entry, len(s.peers)+1)}
	for n, h := range s.peers {
		d.entries[n] = h.e
	}
	if s.own != nil {
		d.entries[s.id.PeerName()] = s.own
	}
	return d
}

// Gossip implements mesh.Gossiper: our entry and every live one.
func (s *gossipState) Gossip() mesh.GossipData { return s.all() }

// OnGossip implements mesh.Gossiper.
func (s *gossipState) OnGossip(msg []byte) (mesh.GossipData, error) {
	if d := s.merge(msg, time.Now()); d != nil {
		return d, nil
	}
	return nil, nil
}

// OnGossipBroadcast implements mesh.Gossiper.
func (s *gossipState) OnGossipBroadcast(_ mesh.PeerName, msg []byte) (mesh.GossipData, error) {
	return s.OnGossip(msg)
}

// OnGossipUnicast implements mesh.Gossiper; entries never travel by
// unicast, so anything arriving this way is ignored.
func (s *gossipState) OnGossipUnicast(mesh.PeerName, []byte) error { return nil }
