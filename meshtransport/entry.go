package meshtransport

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/meshkv/meshkv/internal/peerlink"
)

// Gossip entries. Every node gossips one entry about itself, signed with its
// key; nobody can write another node's entry. The encoding, signed as a
// whole after the context string entryContext:
//
//	format u8 (entryFormat)
//	Ed25519 public key [32], X25519 sealing key [32]
//	version u64 (increasing per process; a newer version replaces an older one)
//	cluster id u64
//	string cluster name, string advertised link address, string nick name
//	uvarint n, n × string client URL
//	string role
//	bytes app state
//	uvarint n, n × u64 raft ids this node cannot reach
//	signature [64]
//
// Strings and bytes are a uvarint length and the bytes. Every length is
// bounded (see the max constants) and checked before anything is allocated.
const (
	entryFormat  = 1
	entryContext = "meshkv/gossip-entry/v1"
	sigLen       = ed25519.SignatureSize

	maxNickName     = 128
	maxURLs         = 16
	maxURL          = 512
	maxRole         = 64
	maxApp          = 16 << 10
	maxUnreachable  = 1024
	maxEntryEncoded = 64 << 10
)

// Meta is what a node publishes about itself in its gossip entry.
type Meta struct {
	// RaftID is the node's raft id. The transport fills it in from the
	// node's key (see RaftIDOf); a value passed to SetMeta is ignored.
	RaftID uint64
	// ClusterName is the node's Config.ClusterName; set by the transport.
	ClusterName string
	ClusterID   uint64   // 0 until the node formed or joined a cluster
	ClientURLs  []string // where clients reach this node
	Role        string   // free-form: "seeking", "voter", "learner", "joining", "leaving" ...
	App         []byte   // opaque, owned by the layer above (bootstrap protocol state)
}

func (m Meta) clone() Meta {
	m.ClientURLs = slices.Clone(m.ClientURLs)
	m.App = slices.Clone(m.App)
	return m
}

// entry is one decoded, verified gossip entry. Entries are immutable once
// built; raw is the signed encoding, kept to gossip it on unchanged.
type entry struct {
	pub         peerlink.PublicKey
	seal        SealKey
	version     uint64
	addr        string
	nick        string
	meta        Meta // RaftID is derived from pub
	unreachable []MemberID
	raw         []byte
}

// name is the mesh peer name the entry speaks for.
func (e *entry) name() PeerName { return PeerNameOf(e.pub) }

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// signEntry encodes e's fields and signs them with id, filling e.raw.
func signEntry(id *Identity, e *entry) {
	b := make([]byte, 0, 256+len(e.meta.App))
	b = append(b, entryFormat)
	b = append(b, e.pub[:]...)
	b = append(b, e.seal[:]...)
	b = binary.BigEndian.AppendUint64(b, e.version)
	b = binary.BigEndian.AppendUint64(b, e.meta.ClusterID)
	b = appendString(b, e.meta.ClusterName)
	b = appendString(b, e.addr)
	b = appendString(b, e.nick)
	b = binary.AppendUvarint(b, uint64(len(e.meta.ClientURLs)))
	for _, u := range e.meta.ClientURLs {
		b = appendString(b, u)
	}
	b = appendString(b, e.meta.Role)
	b = binary.AppendUvarint(b, uint64(len(e.meta.App)))
	b = append(b, e.meta.App...)
	b = binary.AppendUvarint(b, uint64(len(e.unreachable)))
	for _, id := range e.unreachable {
		b = binary.BigEndian.AppendUint64(b, uint64(id))
	}
	sig := id.Link().Sign(append([]byte(entryContext), b...))
	e.raw = append(b, sig...)
}

// checkEntryLimits reports the first field over its bound.
func checkEntryLimits(e *entry) error {
	switch {
	case len(e.meta.ClusterName) > peerlink.MaxClusterName:
		return fmt.Errorf("cluster name of %d bytes", len(e.meta.ClusterName))
	case len(e.addr) > peerlink.MaxAdvertiseAddr:
		return fmt.Errorf("address of %d bytes", len(e.addr))
	case len(e.nick) > maxNickName:
		return fmt.Errorf("nick name of %d bytes", len(e.nick))
	case len(e.meta.ClientURLs) > maxURLs:
		return fmt.Errorf("%d client URLs", len(e.meta.ClientURLs))
	case len(e.meta.Role) > maxRole:
		return fmt.Errorf("role of %d bytes", len(e.meta.Role))
	case len(e.meta.App) > maxApp:
		return fmt.Errorf("app state of %d bytes", len(e.meta.App))
	case len(e.unreachable) > maxUnreachable:
		return fmt.Errorf("%d unreachable members", len(e.unreachable))
	}
	for _, u := range e.meta.ClientURLs {
		if len(u) > maxURL {
			return fmt.Errorf("client URL of %d bytes", len(u))
		}
	}
	return nil
}

// reader decodes bounded fields, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = malformed("entry: %s", what)
	}
	r.b = nil
}

func (r *reader) fixed(n int, what string) []byte {
	if len(r.b) < n {
		r.fail("truncated " + what)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u64(what string) uint64 {
	v := r.fixed(8, what)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (r *reader) count(limit int, what string) int {
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(limit) {
		r.fail("bad " + what)
		return 0
	}
	r.b = r.b[k:]
	return int(n)
}

func (r *reader) bytes(limit int, what string) []byte {
	n := r.count(limit, what+" length")
	return r.fixed(n, what)
}

func (r *reader) str(limit int, what string) string { return string(r.bytes(limit, what)) }

// decodeEntry parses one encoded entry, without checking its signature.
func decodeEntry(raw []byte) (*entry, error) {
	if len(raw) > maxEntryEncoded {
		return nil, malformed("entry of %d bytes", len(raw))
	}
	if len(raw) < 1+32+32+16+sigLen || raw[0] != entryFormat {
		return nil, malformed("entry format")
	}
	r := &reader{b: raw[1 : len(raw)-sigLen]}
	e := &entry{raw: raw}
	copy(e.pub[:], r.fixed(32, "key"))
	copy(e.seal[:], r.fixed(32, "sealing key"))
	e.version = r.u64("version")
	e.meta.ClusterID = r.u64("cluster id")
	e.meta.ClusterName = r.str(peerlink.MaxClusterName, "cluster name")
	e.addr = r.str(peerlink.MaxAdvertiseAddr, "address")
	e.nick = r.str(maxNickName, "nick name")
	if n := r.count(maxURLs, "client URL count"); n > 0 {
		e.meta.ClientURLs = make([]string, 0, n)
		for range n {
			e.meta.ClientURLs = append(e.meta.ClientURLs, r.str(maxURL, "client URL"))
		}
	}
	e.meta.Role = r.str(maxRole, "role")
	if app := r.bytes(maxApp, "app state"); len(app) > 0 {
		e.meta.App = slices.Clone(app)
	}
	if n := r.count(maxUnreachable, "unreachable count"); n > 0 && r.err == nil {
		if len(r.b) < 8*n {
			r.fail("truncated unreachable set")
		} else {
			e.unreachable = make([]MemberID, n)
			for i := range e.unreachable {
				e.unreachable[i] = MemberID(r.u64("unreachable member"))
			}
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, malformed("entry: %d trailing bytes", len(r.b))
	}
	if !validKey(e.pub) {
		return nil, malformed("entry: key maps to id 0")
	}
	e.meta.RaftID = uint64(RaftIDOf(e.pub))
	return e, nil
}

// verifyEntry checks e's signature against its own key.
func verifyEntry(e *entry) bool {
	body := e.raw[:len(e.raw)-sigLen]
	msg := make([]byte, 0, len(entryContext)+len(body))
	msg = append(append(msg, entryContext...), body...)
	return ed25519.Verify(e.pub[:], msg, e.raw[len(e.raw)-sigLen:])
}

// Gossip messages: format u8 (gossipFormat), uvarint n, n × { uvarint
// length, entry }.
const gossipFormat = 3

// maxGossipMessage keeps one encoded gossip message far below mesh's
// 10 MiB limit.
const maxGossipMessage = 256 << 10

// encodeEntries packs raw entries into messages of at most
// maxGossipMessage bytes (an entry larger than that travels alone).
func encodeEntries(raws [][]byte) [][]byte {
	var out [][]byte
	var cur []byte
	count := 0
	flush := func() {
		if count > 0 {
			msg := []byte{gossipFormat}
			msg = binary.AppendUvarint(msg, uint64(count))
			out = append(out, append(msg, cur...))
		}
		cur, count = nil, 0
	}
	for _, raw := range raws {
		if count > 0 && len(cur)+len(raw)+binary.MaxVarintLen64 > maxGossipMessage {
			flush()
		}
		cur = binary.AppendUvarint(cur, uint64(len(raw)))
		cur = append(cur, raw...)
		count++
	}
	flush()
	return out
}

// splitEntries splits a gossip message into raw entries (sub-slices of
// msg), checking only the framing.
func splitEntries(msg []byte) ([][]byte, error) {
	if len(msg) == 0 || msg[0] != gossipFormat {
		return nil, malformed("gossip format")
	}
	r := &reader{b: msg[1:]}
	n := r.count(len(msg), "entry count")
	if r.err != nil {
		return nil, r.err
	}
	out := make([][]byte, 0, min(n, 64))
	for range n {
		raw := r.bytes(maxEntryEncoded, "entry")
		if r.err != nil {
			return nil, r.err
		}
		out = append(out, raw)
	}
	if len(r.b) != 0 {
		return nil, malformed("gossip: %d trailing bytes", len(r.b))
	}
	return out, nil
}
