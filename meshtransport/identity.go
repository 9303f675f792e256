package meshtransport

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/weaveworks/mesh"

	"github.com/meshkv/meshkv/internal/ids"
	"github.com/meshkv/meshkv/internal/peerlink"
)

// This file is the one place where a member's key maps to its raft id and
// its mesh peer name. Both are hashes of the Ed25519 public key that the
// member proves on every link (TLS) and with every gossip entry (signature),
// so nobody can claim another member's id or name without its private key.
//
//	raft id   = big-endian uint64 of SHA-256("meshkv/raft-id/v1" || pub)[0:8]
//	mesh name = big-endian 48 bits of SHA-256("meshkv/mesh-name/v1" || pub)[0:6]
//
// Neither is ever 0: NewIdentity draws a new key until both are non-zero,
// and a peer whose key maps to 0 is refused.

// MemberID is a raft member's id (see internal/ids).
type MemberID = ids.MemberID

// PeerName is a mesh peer name: 48 bits, derived from the key.
type PeerName = mesh.PeerName

// Domain separation of the two hashes.
const (
	raftIDContext   = "meshkv/raft-id/v1"
	meshNameContext = "meshkv/mesh-name/v1"
)

// RaftIDOf returns the raft id of the member whose key is pub.
func RaftIDOf(pub peerlink.PublicKey) MemberID {
	h := sha256.New()
	h.Write([]byte(raftIDContext))
	h.Write(pub[:])
	var sum [sha256.Size]byte
	return MemberID(binary.BigEndian.Uint64(h.Sum(sum[:0])))
}

// PeerNameOf returns the mesh peer name of the member whose key is pub.
func PeerNameOf(pub peerlink.PublicKey) PeerName {
	h := sha256.New()
	h.Write([]byte(meshNameContext))
	h.Write(pub[:])
	var sum [sha256.Size]byte
	s := h.Sum(sum[:0])
	var b [8]byte
	copy(b[2:], s[:6])
	return PeerName(binary.BigEndian.Uint64(b[:]))
}

// validKey reports whether pub maps to a usable raft id and mesh name.
func validKey(pub peerlink.PublicKey) bool {
	return RaftIDOf(pub) != 0 && PeerNameOf(pub) != mesh.UnknownPeerName
}

// SealKey is an X25519 public key, used to seal frames end to end.
type SealKey [32]byte

// Identity is a process's keys: the Ed25519 key its links and gossip entries
// are authenticated with, and an X25519 key for sealed frames. Both live in
// memory only: a restarted process is a new member with a new raft id.
type Identity struct {
	link    *peerlink.Identity
	seal    *ecdh.PrivateKey
	sealPub SealKey
	raftID  MemberID
	name    PeerName
}

// NewIdentity generates fresh keys.
func NewIdentity() (*Identity, error) {
	for {
		li, err := peerlink.NewIdentity()
		if err != nil {
			return nil, err
		}
		if !validKey(li.PublicKey()) {
			continue // about one key in 2^48 maps to name 0
		}
		sk, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("meshtransport: generate sealing key: %w", err)
		}
		id := &Identity{link: li, seal: sk, raftID: RaftIDOf(li.PublicKey()), name: PeerNameOf(li.PublicKey())}
		copy(id.sealPub[:], sk.PublicKey().Bytes())
		return id, nil
	}
}

// RaftID is the raft id of this identity.
func (id *Identity) RaftID() MemberID { return id.raftID }

// PeerName is the mesh peer name of this identity.
func (id *Identity) PeerName() PeerName { return id.name }

// PublicKey is the Ed25519 public key.
func (id *Identity) PublicKey() peerlink.PublicKey { return id.link.PublicKey() }

// SealKey is the X25519 public key peers seal frames to.
func (id *Identity) SealKey() SealKey { return id.sealPub }

// Link returns the link-layer identity (for a Fabric).
func (id *Identity) Link() *peerlink.Identity { return id.link }
