package meshtransport

import (
	"crypto/cipher"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshkv/meshkv/internal/peerlink"
)

// peer is everything the transport keeps about one other node: its keys and
// ids, its path, its sender, its replay window and its counters. Peers are
// created when a link to them comes up or their gossip entry arrives, and
// dropped by the monitor once they have neither for EntryTTL.
type peer struct {
	t    *Transport
	key  peerlink.PublicKey
	id   MemberID
	name PeerName

	sealKey atomic.Pointer[SealKey]
	aead    atomic.Pointer[pairAEAD]
	sendCtr atomic.Uint64 // counter of the last envelope sealed to the peer
	linkUp  atomic.Bool
	path    atomic.Uint32 // Path, copied from ps for lock-free readers

	mu         sync.Mutex
	ps         *pathState
	linkRTT    time.Duration
	lastActive time.Time // when a link or a live gossip entry last showed the peer
	violations int       // protocol violations since the last log line
	lastViolog time.Time

	replay replay // owned by the inbound goroutine

	out   *sender
	stats peerCounters
}

// pairAEAD is the pairwise sealing key derived for one peer sealing key.
type pairAEAD struct {
	theirs SealKey
	aead   cipher.AEAD
}

func newPeer(t *Transport, key peerlink.PublicKey, now time.Time) *peer {
	p := &peer{
		t:          t,
		key:        key,
		id:         RaftIDOf(key),
		name:       PeerNameOf(key),
		ps:         newPathState(t.pathParams, now),
		lastActive: now,
	}
	p.out = newSender(p)
	return p
}

// setSealKey records the peer's sealing key (from its link hello or its
// signed gossip entry; both are authenticated by its key).
func (p *peer) setSealKey(k SealKey) {
	if cur := p.sealKey.Load(); cur != nil && *cur == k {
		return
	}
	p.sealKey.Store(&k)
}

// cipher returns the AEAD shared with the peer, deriving it on first use
// or after the peer's sealing key changed; nil while the key is unknown or
// unusable.
func (p *peer) cipher() cipher.AEAD {
	k := p.sealKey.Load()
	if k == nil {
		return nil
	}
	if a := p.aead.Load(); a != nil && a.theirs == *k {
		return a.aead
	}
	id := p.t.id
	aead, err := pairKey(id.seal, id.PublicKey(), *k, p.key)
	if err != nil {
		p.t.stats.drops[dropBadSealKey].Add(1)
		return nil
	}
	p.aead.Store(&pairAEAD{theirs: *k, aead: aead})
	return aead
}

// currentPath reads the path without locks.
func (p *peer) currentPath() Path { return Path(p.path.Load()) }

// setPath publishes the path state's verdict (p.mu held).
func (p *peer) publishPath() { p.path.Store(uint32(p.ps.path)) }

// peerCounters are one peer's counters.
type peerCounters struct {
	msgsDirect, bytesDirect   atomic.Uint64 // raft messages and frame bytes sent on the link
	msgsRelayed, bytesRelayed atomic.Uint64 // sent sealed over the mesh
	msgsIn, bytesIn           atomic.Uint64 // raft messages stepped, frame bytes received (both paths)
	msgsInRelayed             atomic.Uint64 // of which arrived over the mesh
	pathSwitches              atomic.Uint64
}
