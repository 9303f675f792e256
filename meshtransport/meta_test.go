package meshtransport

import (
	"bytes"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/weaveworks/mesh"
)

func sampleEntry(inc, ver uint64) *metaEntry {
	return &metaEntry{Incarnation: inc, Version: ver, NickName: "n1", Addr: "10.0.0.1:2380", Meta: Meta{
		RaftID: 5, ClusterName: "c", ClusterID: 77, ClientURLs: []string{"http://a:2379", "http://b:2379"},
		Role: "voter", App: []byte{0, 1, 2},
	}}
}

func TestMetaEncodeRoundTrip(t *testing.T) {
	d := &metaData{entries: map[mesh.PeerName]*metaEntry{
		1: sampleEntry(3, 4),
		2: {Incarnation: 1, Version: 1}, // all-zero meta
	}}
	msgs := d.Encode()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	got, err := decodeMeta(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.entries, d.entries) {
		t.Fatalf("decoded %+v, want %+v", got.entries[1], d.entries[1])
	}
	for _, bad := range [][]byte{nil, {1}, {3}, msgs[0][:len(msgs[0])-1], append(bytes.Clone(msgs[0]), 0)} {
		if _, err := decodeMeta(bad); err == nil {
			t.Errorf("decodeMeta(%x) succeeded", bad)
		}
	}
}

func TestMetaEncodeSplitsLargeState(t *testing.T) {
	d := &metaData{entries: map[mesh.PeerName]*metaEntry{}}
	for i := range 10 {
		e := sampleEntry(1, 1)
		e.Meta.App = make([]byte, 100<<10)
		d.entries[mesh.PeerName(i+1)] = e
	}
	msgs := d.Encode()
	if len(msgs) < 4 {
		t.Fatalf("1 MiB of metadata in %d messages, want it split", len(msgs))
	}
	merged := &metaData{entries: map[mesh.PeerName]*metaEntry{}}
	for _, m := range msgs {
		if len(m) > maxMetaMessage+1024 {
			t.Errorf("message of %d bytes", len(m))
		}
		part, err := decodeMeta(m)
		if err != nil {
			t.Fatal(err)
		}
		merged = merged.Merge(part).(*metaData)
	}
	if len(merged.entries) != 10 {
		t.Fatalf("%d entries after merging the parts, want 10", len(merged.entries))
	}
}

func TestMetaMergeNewestWins(t *testing.T) {
	old, newer, otherInc := sampleEntry(5, 1), sampleEntry(5, 2), sampleEntry(6, 1)
	a := &metaData{entries: map[mesh.PeerName]*metaEntry{1: old}}
	b := &metaData{entries: map[mesh.PeerName]*metaEntry{1: newer, 2: old}}
	m := a.Merge(b).(*metaData)
	if m.entries[1] != newer || m.entries[2] != old {
		t.Fatalf("merge kept %+v", m.entries)
	}
	if a.entries[1] != old || len(a.entries) != 1 {
		t.Fatal("Merge modified its receiver")
	}
	if m2 := m.Merge(&metaData{entries: map[mesh.PeerName]*metaEntry{1: old}}).(*metaData); m2.entries[1] != newer {
		t.Fatal("an older version replaced a newer one")
	}
	if m3 := m.Merge(&metaData{entries: map[mesh.PeerName]*metaEntry{1: otherInc}}).(*metaData); m3.entries[1] != otherInc {
		t.Fatal("a higher incarnation did not win")
	}
}

func TestMetaStateGossiper(t *testing.T) {
	var changes atomic.Int32
	s := newMetaState(1, &metaEntry{Incarnation: 9, Version: 1}, func() { changes.Add(1) })
	peer := &metaData{entries: map[mesh.PeerName]*metaEntry{2: sampleEntry(1, 1)}}

	delta, err := s.OnGossip(peer.Encode()[0])
	if err != nil || delta == nil {
		t.Fatalf("OnGossip = %v, %v; want a delta", delta, err)
	}
	if changes.Load() != 1 {
		t.Errorf("%d change signals, want 1", changes.Load())
	}
	// The same data again is not news.
	if delta, err := s.OnGossipBroadcast(2, peer.Encode()[0]); err != nil || delta != nil {
		t.Fatalf("repeat OnGossipBroadcast = %v, %v; want nil, nil", delta, err)
	}
	// Nobody else may speak for us.
	forged := &metaData{entries: map[mesh.PeerName]*metaEntry{1: sampleEntry(100, 100)}}
	if delta, _ := s.OnGossip(forged.Encode()[0]); delta != nil {
		t.Fatal("a forged entry for ourself was accepted")
	}
	if s.own().Incarnation != 9 {
		t.Fatal("our own entry was replaced by gossip")
	}
	// Garbage is ignored, not returned as an error (that would drop mesh's connection).
	if delta, err := s.OnGossip([]byte{1, 2, 3}); err != nil || delta != nil {
		t.Fatalf("garbage: %v, %v", delta, err)
	}
	if s.malformed.Load() != 1 {
		t.Errorf("malformed = %d, want 1", s.malformed.Load())
	}
	if err := s.OnGossipUnicast(2, []byte("x")); err != nil {
		t.Fatal(err)
	}

	d := s.setOwn(Meta{RaftID: 4, ClientURLs: []string{"u"}})
	if e := d.entries[1]; e.Version != 2 || e.Incarnation != 9 || e.Meta.RaftID != 4 {
		t.Fatalf("setOwn entry = %+v", e)
	}
	full := s.Gossip().(*metaData)
	if len(full.entries) != 2 || full.entries[1].Meta.RaftID != 4 {
		t.Fatalf("Gossip() = %+v", full.entries)
	}
}
