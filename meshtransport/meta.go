package meshtransport

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/weaveworks/mesh"
)

// Meta is the metadata every node gossips about itself. Gossiped metadata is
// also the one place where raft ids map to mesh peers: a peer's RaftID says
// which raft member it is, and nothing else in meshkv keeps that mapping.
type Meta struct {
	RaftID      uint64   // 0 until the node is a raft member
	ClusterName string   // always the sender's Config.ClusterName
	ClusterID   uint64   // 0 until the cluster exists
	ClientURLs  []string // where clients reach this node
	Role        string   // free-form: "bootstrapping", "voter", "learner", "joining", "leaving" ...
	App         []byte   // opaque, owned by the layer above (bootstrap protocol state)
}

func (m Meta) clone() Meta {
	m.ClientURLs = slices.Clone(m.ClientURLs)
	m.App = slices.Clone(m.App)
	return m
}

// metaEntry is one peer's gossiped metadata with its version stamp.
type metaEntry struct {
	Incarnation uint64 // random per process start
	Version     uint64 // bumped by every SetMeta
	NickName    string
	// Addr is the peer's mesh listen address when it can be dialled (a
	// specific host, not 0.0.0.0): peer discovery dials it, since mesh's
	// own discovery assumes every peer listens on our port.
	Addr string
	Meta Meta
}

// newer reports whether e supersedes o: the higher (incarnation, version)
// wins.
func (e *metaEntry) newer(o *metaEntry) bool {
	if e.Incarnation != o.Incarnation {
		return e.Incarnation > o.Incarnation
	}
	return e.Version > o.Version
}

// metaData is an immutable set of entries handed to mesh as GossipData.
// Merge returns a new value and never modifies either operand, because mesh
// keeps gossip data in its senders and encodes it later on other goroutines.
type metaData struct {
	entries map[mesh.PeerName]*metaEntry
}

var _ mesh.GossipData = (*metaData)(nil)

// Merge implements mesh.GossipData.
func (d *metaData) Merge(other mesh.GossipData) mesh.GossipData {
	o, ok := other.(*metaData)
	if !ok {
		return d
	}
	out := &metaData{entries: make(map[mesh.PeerName]*metaEntry, len(d.entries)+len(o.entries))}
	for n, e := range d.entries {
		out.entries[n] = e
	}
	for n, e := range o.entries {
		if cur, ok := out.entries[n]; !ok || e.newer(cur) {
			out.entries[n] = e
		}
	}
	return out
}

// maxMetaMessage keeps one encoded gossip message far below mesh's limit.
const maxMetaMessage = 256 << 10

// Encode implements mesh.GossipData: entries in name order, split into
// messages of at most maxMetaMessage bytes (an entry larger than that travels
// alone).
func (d *metaData) Encode() [][]byte {
	names := make([]mesh.PeerName, 0, len(d.entries))
	for n := range d.entries {
		names = append(names, n)
	}
	slices.Sort(names)
	var out [][]byte
	var cur []byte
	count := 0
	flush := func() {
		if count > 0 {
			out = append(out, finishMetaMessage(cur, count))
		}
		cur, count = nil, 0
	}
	for _, n := range names {
		enc := appendMetaEntry(nil, n, d.entries[n])
		if count > 0 && len(cur)+len(enc) > maxMetaMessage {
			flush()
		}
		cur = append(cur, enc...)
		count++
	}
	flush()
	return out
}

const metaFormat = 2

func finishMetaMessage(entries []byte, count int) []byte {
	b := []byte{metaFormat}
	b = binary.AppendUvarint(b, uint64(count))
	return append(b, entries...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendMetaEntry(b []byte, name mesh.PeerName, e *metaEntry) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(name))
	b = binary.BigEndian.AppendUint64(b, e.Incarnation)
	b = binary.BigEndian.AppendUint64(b, e.Version)
	b = appendString(b, e.NickName)
	b = appendString(b, e.Addr)
	m := &e.Meta
	b = binary.BigEndian.AppendUint64(b, m.RaftID)
	b = appendString(b, m.ClusterName)
	b = binary.BigEndian.AppendUint64(b, m.ClusterID)
	b = binary.AppendUvarint(b, uint64(len(m.ClientURLs)))
	for _, u := range m.ClientURLs {
		b = appendString(b, u)
	}
	b = appendString(b, m.Role)
	b = binary.AppendUvarint(b, uint64(len(m.App)))
	return append(b, m.App...)
}

// metaReader decodes the fields of a gossip message, remembering the first
// error.
type metaReader struct {
	b   []byte
	err error
}

func (r *metaReader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated metadata", errMalformed)
	}
	r.b = nil
}

func (r *metaReader) u64() uint64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *metaReader) uvarint() uint64 {
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *metaReader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *metaReader) str() string { return string(r.bytes()) }

// decodeMeta parses one gossip message into fresh entries.
func decodeMeta(msg []byte) (*metaData, error) {
	if len(msg) == 0 || msg[0] != metaFormat {
		return nil, fmt.Errorf("%w: metadata format", errMalformed)
	}
	r := &metaReader{b: msg[1:]}
	count := r.uvarint()
	if count > uint64(len(r.b)) {
		return nil, fmt.Errorf("%w: metadata count %d", errMalformed, count)
	}
	d := &metaData{entries: make(map[mesh.PeerName]*metaEntry, count)}
	for i := uint64(0); i < count && r.err == nil; i++ {
		name := mesh.PeerName(r.u64())
		e := &metaEntry{Incarnation: r.u64(), Version: r.u64(), NickName: r.str(), Addr: r.str()}
		e.Meta.RaftID = r.u64()
		e.Meta.ClusterName = r.str()
		e.Meta.ClusterID = r.u64()
		nurls := r.uvarint()
		if nurls > uint64(len(r.b)) {
			r.fail()
			break
		}
		for j := uint64(0); j < nurls && r.err == nil; j++ {
			e.Meta.ClientURLs = append(e.Meta.ClientURLs, r.str())
		}
		e.Meta.Role = r.str()
		if app := r.bytes(); len(app) > 0 {
			e.Meta.App = slices.Clone(app)
		}
		if cur, ok := d.entries[name]; !ok || e.newer(cur) {
			d.entries[name] = e
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing metadata bytes", errMalformed, len(r.b))
	}
	return d, nil
}

// metaState is the live, mutable metadata of every peer we heard of. It is
// the mesh.Gossiper of the metadata channel; its callbacks only take a mutex
// and never block on anything else.
type metaState struct {
	self     mesh.PeerName
	onChange func() // non-blocking signal, called after every change

	malformed atomic.Uint64 // undecodable gossip messages

	mu      sync.Mutex
	entries map[mesh.PeerName]*metaEntry // entries are replaced, never modified
}

var _ mesh.Gossiper = (*metaState)(nil)

func newMetaState(self mesh.PeerName, own *metaEntry, onChange func()) *metaState {
	return &metaState{
		self:     self,
		onChange: onChange,
		entries:  map[mesh.PeerName]*metaEntry{self: own},
	}
}

// setOwn replaces our own entry with meta, bumping the version, and returns
// the new entry as GossipData for broadcasting.
func (s *metaState) setOwn(meta Meta) *metaData {
	s.mu.Lock()
	cur := s.entries[s.self]
	e := &metaEntry{Incarnation: cur.Incarnation, Version: cur.Version + 1, NickName: cur.NickName, Addr: cur.Addr, Meta: meta.clone()}
	s.entries[s.self] = e
	s.mu.Unlock()
	s.onChange()
	return &metaData{entries: map[mesh.PeerName]*metaEntry{s.self: e}}
}

// setAddr records our dialable mesh address (before the first broadcast).
func (s *metaState) setAddr(addr string) {
	s.mu.Lock()
	cur := *s.entries[s.self]
	cur.Addr = addr
	cur.Version++
	s.entries[s.self] = &cur
	s.mu.Unlock()
}

func (s *metaState) own() *metaEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entries[s.self]
}

func (s *metaState) ownData() *metaData {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &metaData{entries: map[mesh.PeerName]*metaEntry{s.self: s.entries[s.self]}}
}

// snapshot returns the current entries; the map is a copy, the entries are
// immutable.
func (s *metaState) snapshot() map[mesh.PeerName]*metaEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[mesh.PeerName]*metaEntry, len(s.entries))
	for n, e := range s.entries {
		out[n] = e
	}
	return out
}

// merge folds d into the state and returns the entries that were new, or nil.
// Nobody but us may speak for our own entry.
func (s *metaState) merge(d *metaData) *metaData {
	var delta map[mesh.PeerName]*metaEntry
	s.mu.Lock()
	for n, e := range d.entries {
		if n == s.self {
			continue
		}
		if cur, ok := s.entries[n]; ok && !e.newer(cur) {
			continue
		}
		s.entries[n] = e
		if delta == nil {
			delta = make(map[mesh.PeerName]*metaEntry)
		}
		delta[n] = e
	}
	s.mu.Unlock()
	if delta == nil {
		return nil
	}
	s.onChange()
	return &metaData{entries: delta}
}

// Gossip implements mesh.Gossiper: everything we know.
func (s *metaState) Gossip() mesh.GossipData {
	return &metaData{entries: s.snapshot()}
}

// OnGossip implements mesh.Gossiper. Undecodable data is ignored (an error
// would make mesh drop the connection).
func (s *metaState) OnGossip(msg []byte) (mesh.GossipData, error) {
	d, err := decodeMeta(msg)
	if err != nil {
		s.malformed.Add(1)
		return nil, nil
	}
	if delta := s.merge(d); delta != nil {
		return delta, nil
	}
	return nil, nil
}

// OnGossipBroadcast implements mesh.Gossiper.
func (s *metaState) OnGossipBroadcast(_ mesh.PeerName, msg []byte) (mesh.GossipData, error) {
	return s.OnGossip(msg)
}

// OnGossipUnicast implements mesh.Gossiper; metadata never travels by
// unicast, so anything arriving this way is ignored.
func (s *metaState) OnGossipUnicast(mesh.PeerName, []byte) error { return nil }
