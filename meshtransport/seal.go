package meshtransport

import (
	"bytes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/meshkv/meshkv/internal/peerlink"
)

// Sealed envelopes. A frame sent over the mesh (the relayed path) is sealed
// end to end, so relays can neither read, forge nor replay it:
//
//	offset size field
//	0      1    sealVersion
//	1      32   origin Ed25519 public key
//	33     24   nonce (random)
//	57     ...  XChaCha20-Poly1305 ciphertext of { counter u64, frame }, with its 16-byte tag
//
// The key is pairwise: HKDF-SHA256 of the X25519 shared secret of the two
// sealing keys, salt = the two Ed25519 keys in ascending order, info
// sealInfo. The associated data is the first 57 bytes, the destination's
// Ed25519 key and the cluster name, so an envelope is valid only from that
// origin, to that destination, in that cluster (a relay cannot reflect it
// back to its origin, nor carry it to another cluster). The counter starts
// at 1 and increases per (origin, destination); receivers keep a sliding
// window per origin and drop repeats and anything older than the window.
// Mesh's own source field is ignored: the origin is what the key proves.
const (
	sealVersion   = 1
	sealHeaderLen = 1 + 32 + chacha20poly1305.NonceSizeX
	sealOverhead  = sealHeaderLen + 8 + chacha20poly1305.Overhead
	sealInfo      = "meshkv/seal/v1"
	// replayWindow is how far behind the highest counter seen from an
	// origin a frame may arrive and still be accepted once.
	replayWindow = 4096
)

// Errors of opening an envelope.
var (
	errSealFormat = errors.New("malformed sealed envelope")
	errSealAuth   = errors.New("sealed envelope does not authenticate")
	errReplay     = errors.New("replayed or too old sealed envelope")
)

// pairKey derives the AEAD shared by us and a peer.
func pairKey(ours *ecdh.PrivateKey, ourPub peerlink.PublicKey, theirs SealKey, theirPub peerlink.PublicKey) (cipher.AEAD, error) {
	pk, err := ecdh.X25519().NewPublicKey(theirs[:])
	if err != nil {
		return nil, fmt.Errorf("peer sealing key: %w", err)
	}
	shared, err := ours.ECDH(pk)
	if err != nil {
		return nil, fmt.Errorf("peer sealing key: %w", err)
	}
	salt := make([]byte, 0, 64)
	if bytes.Compare(ourPub[:], theirPub[:]) < 0 {
		salt = append(append(salt, ourPub[:]...), theirPub[:]...)
	} else {
		salt = append(append(salt, theirPub[:]...), ourPub[:]...)
	}
	key, err := hkdf.Key(sha256.New, shared, salt, sealInfo, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	return chacha20poly1305.NewX(key)
}

// sealAD builds the associated data of an envelope.
func sealAD(buf []byte, head []byte, dst peerlink.PublicKey, cluster string) []byte {
	buf = append(buf[:0], head...)
	buf = append(buf, dst[:]...)
	return append(buf, cluster...)
}

// seal appends the envelope of frame, from origin to dst, to out.
func seal(out []byte, aead cipher.AEAD, origin, dst peerlink.PublicKey, cluster string, counter uint64, frame []byte) []byte {
	start := len(out)
	out = append(out, sealVersion)
	out = append(out, origin[:]...)
	var nonce [chacha20poly1305.NonceSizeX]byte
	_, _ = rand.Read(nonce[:]) // crypto/rand never fails
	out = append(out, nonce[:]...)
	var ad [sealHeaderLen + 32 + peerlink.MaxClusterName]byte
	adb := sealAD(ad[:0], out[start:], dst, cluster)
	pt := make([]byte, 8, 8+len(frame))
	binary.BigEndian.PutUint64(pt, counter)
	pt = append(pt, frame...)
	return aead.Seal(out, nonce[:], pt, adb)
}

// sealOrigin returns the origin key of an envelope without authenticating it.
func sealOrigin(env []byte) (peerlink.PublicKey, error) {
	var k peerlink.PublicKey
	if len(env) < sealOverhead || env[0] != sealVersion {
		return k, errSealFormat
	}
	copy(k[:], env[1:33])
	return k, nil
}

// open authenticates and decrypts an envelope addressed to us (self) and
// returns its counter and frame. The frame is a fresh slice.
func open(aead cipher.AEAD, self peerlink.PublicKey, cluster string, env []byte) (uint64, []byte, error) {
	if len(env) < sealOverhead || env[0] != sealVersion {
		return 0, nil, errSealFormat
	}
	var ad [sealHeaderLen + 32 + peerlink.MaxClusterName]byte
	adb := sealAD(ad[:0], env[:sealHeaderLen], self, cluster)
	pt, err := aead.Open(nil, env[33:sealHeaderLen], env[sealHeaderLen:], adb)
	if err != nil {
		return 0, nil, errSealAuth
	}
	return binary.BigEndian.Uint64(pt), pt[8:], nil
}

// replay is a sliding window of the counters seen from one origin.
type replay struct {
	top  uint64                    // highest counter accepted
	bits [replayWindow / 64]uint64 // bit (c % replayWindow) set: counter c seen, for c in (top-replayWindow, top]
}

// accept records counter c and reports whether it is new: above the
// window, or inside it and not seen before.
func (r *replay) accept(c uint64) bool {
	switch {
	case c == 0:
		return false
	case c > r.top:
		if c-r.top >= replayWindow {
			clear(r.bits[:])
		} else {
			for i := r.top + 1; i < c; i++ {
				r.clearBit(i)
			}
		}
		r.top = c
		r.setBit(c)
		return true
	case r.top-c >= replayWindow:
		return false
	case r.hasBit(c):
		return false
	}
	r.setBit(c)
	return true
}

func (r *replay) setBit(c uint64)   { r.bits[(c%replayWindow)/64] |= 1 << (c % 64) }
func (r *replay) clearBit(c uint64) { r.bits[(c%replayWindow)/64] &^= 1 << (c % 64) }
func (r *replay) hasBit(c uint64) bool {
	return r.bits[(c%replayWindow)/64]&(1<<(c%64)) != 0
}
