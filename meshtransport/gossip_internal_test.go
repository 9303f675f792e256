package meshtransport

import (
	"testing"
	"time"
)

func newTestIdentity(t testing.TB) *Identity {
	t.Helper()
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestGossipMergeSignedEntry(t *testing.T) {
	a, b := newTestIdentity(t), newTestIdentity(t)
	sa := newGossipState(a, time.Minute, 16, func() {})
	sb := newGossipState(b, time.Minute, 16, func() {})
	d := sa.setOwn(func(e *entry) { e.meta.ClusterName = "x"; e.addr = "h:1" })
	for _, m := range d.Encode() {
		if got := sb.merge(m, time.Now()); got == nil {
			t.Fatalf("merge took nothing; malformed %d forged %d", sb.malformed.Load(), sb.forged.Load())
		}
	}
	h, ok := sb.live()[a.PeerName()]
	if !ok || h.e.addr != "h:1" || h.e.meta.ClusterName != "x" || h.e.meta.RaftID != uint64(a.RaftID()) {
		t.Fatalf("entry not taken as sent: %+v", h.e)
	}
}

// gossipOf encodes one entry as a gossip message.
func gossipOf(e *entry) []byte { return encodeEntries([][]byte{e.raw})[0] }

// TestGossipSpeaksOnlyForItself: an entry whose signature does not verify
// against the key it carries (someone writing another node's entry) is
// dropped, as is anything about ourselves.
func TestGossipSpeaksOnlyForItself(t *testing.T) {
	victim, attacker, self := newTestIdentity(t), newTestIdentity(t), newTestIdentity(t)
	s := newGossipState(self, time.Minute, 16, func() {})
	now := time.Unix(100, 0)

	// The attacker signs an entry that carries the victim's key.
	forged := &entry{pub: victim.PublicKey(), seal: attacker.SealKey(), version: 99, addr: "evil:1"}
	signEntry(attacker, forged)
	if s.merge(gossipOf(forged), now) != nil || s.forged.Load() != 1 {
		t.Fatalf("forged entry taken (forged count %d)", s.forged.Load())
	}
	// A genuine entry, then a tampered copy with a higher version.
	genuine := &entry{pub: victim.PublicKey(), seal: victim.SealKey(), version: 1, addr: "good:1"}
	signEntry(victim, genuine)
	if s.merge(gossipOf(genuine), now) == nil {
		t.Fatal("genuine entry refused")
	}
	tampered := *genuine
	tampered.raw = append([]byte(nil), genuine.raw...)
	tampered.raw[1+32+32+7] = 50 // version 50
	if s.merge(gossipOf(&tampered), now) != nil {
		t.Fatal("tampered entry taken")
	}
	// Our own entry, signed by us, is never taken from gossip.
	mine := &entry{pub: self.PublicKey(), seal: self.SealKey(), version: 1000}
	signEntry(self, mine)
	if s.merge(gossipOf(mine), now) != nil {
		t.Fatal("an entry about ourselves was taken from gossip")
	}
	if h := s.live()[victim.PeerName()]; h.e.addr != "good:1" {
		t.Fatalf("victim's entry is %+v", h.e)
	}
}

// TestGossipExpiryAndTombstones: an entry not refreshed for the TTL
// expires, copies of its last version do not bring it back, a newer
// version does.
func TestGossipExpiryAndTombstones(t *testing.T) {
	peer, self := newTestIdentity(t), newTestIdentity(t)
	s := newGossipState(self, 30*time.Second, 16, func() {})
	t0 := time.Unix(100, 0)
	v := func(n uint64) []byte {
		e := &entry{pub: peer.PublicKey(), seal: peer.SealKey(), version: n}
		signEntry(peer, e)
		return gossipOf(e)
	}
	s.merge(v(1), t0)
	s.merge(v(1), t0.Add(20*time.Second)) // an old copy does not refresh it
	if gone := s.expire(t0.Add(29 * time.Second)); len(gone) != 0 {
		t.Fatalf("expired early: %v", gone)
	}
	if gone := s.expire(t0.Add(31 * time.Second)); len(gone) != 1 {
		t.Fatalf("not expired after the TTL: %v", gone)
	}
	if _, ok := s.live()[peer.PeerName()]; ok {
		t.Fatal("expired entry still live")
	}
	if s.merge(v(1), t0.Add(32*time.Second)) != nil {
		t.Fatal("a re-gossiped copy resurrected an expired entry")
	}
	if s.Gossip().(*gossipData).entries[peer.PeerName()] != nil {
		t.Fatal("an expired entry is still gossiped")
	}
	if s.merge(v(2), t0.Add(33*time.Second)) == nil {
		t.Fatal("a newer version of an expired entry refused")
	}
	// Tombstones go after tombstoneTTLs TTLs.
	s.expire(t0.Add(33*time.Second + 31*time.Second))
	s.expire(t0.Add(33*time.Second + 31*time.Second + tombstoneTTLs*30*time.Second + time.Second))
	if len(s.dead) != 0 {
		t.Fatalf("%d tombstones left", len(s.dead))
	}
}

func TestGossipBoundsEntries(t *testing.T) {
	self := newTestIdentity(t)
	s := newGossipState(self, time.Minute, 3, func() {})
	for range 5 {
		id := newTestIdentity(t)
		e := &entry{pub: id.PublicKey(), seal: id.SealKey(), version: 1}
		signEntry(id, e)
		s.merge(gossipOf(e), time.Unix(1, 0))
	}
	if n := len(s.live()); n != 3 || s.full.Load() != 2 {
		t.Fatalf("%d entries held, %d refused; want 3 and 2", n, s.full.Load())
	}
}

func TestEntryLimitsAndRoundTrip(t *testing.T) {
	id := newTestIdentity(t)
	e := &entry{pub: id.PublicKey(), seal: id.SealKey(), version: 3, addr: "h:1", nick: "n",
		meta:        Meta{ClusterName: "c", ClusterID: 9, ClientURLs: []string{"http://a:1", "http://b:2"}, Role: "voter", App: []byte("app")},
		unreachable: []MemberID{4, 5}}
	signEntry(id, e)
	got, err := decodeEntry(e.raw)
	if err != nil || !verifyEntry(got) {
		t.Fatalf("decode %v verify %v", err, err == nil && verifyEntry(got))
	}
	if got.meta.ClusterID != 9 || got.meta.Role != "voter" || len(got.meta.ClientURLs) != 2 || string(got.meta.App) != "app" ||
		len(got.unreachable) != 2 || got.unreachable[1] != 5 || got.meta.RaftID != uint64(id.RaftID()) {
		t.Fatalf("round trip: %+v", got)
	}
	big := &entry{pub: id.PublicKey(), meta: Meta{App: make([]byte, maxApp+1)}}
	if checkEntryLimits(big) == nil {
		t.Fatal("oversized app state passed the limits")
	}
	for i := range e.raw {
		if _, err := decodeEntry(e.raw[:i]); err == nil && i < len(e.raw)-sigLen {
			t.Fatalf("truncated entry of %d bytes decoded", i)
		}
	}
}
