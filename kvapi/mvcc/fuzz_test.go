package mvcc

import (
	"bytes"
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// FuzzRestore feeds arbitrary bytes to Restore, the decoder of the store
// snapshots a leader sends over the network. It must never panic; input it
// refuses must be reported as corrupt (or truncated) and leave the store as
// it was; input it accepts must round-trip.
func FuzzRestore(f *testing.F) {
	src := New()
	for i, k := range []string{"a", "b", "a", "c/1", "c/2"} {
		if _, err := src.Put(&pb.PutRequest{Key: []byte(k), Value: bytes.Repeat([]byte{byte('v' + i)}, i)}); err != nil {
			f.Fatal(err)
		}
	}
	if err := src.LeaseGrant(7, 30, 3); err != nil {
		f.Fatal(err)
	}
	if _, err := src.DeleteRange(&pb.DeleteRangeRequest{Key: []byte("b")}); err != nil {
		f.Fatal(err)
	}
	if _, err := src.Compact(&pb.CompactionRequest{Revision: 3}); err != nil {
		f.Fatal(err)
	}
	var good bytes.Buffer
	if _, err := src.Snapshot().WriteTo(&good); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:len(good.Bytes())/2])
	f.Add([]byte{})
	var empty bytes.Buffer
	if _, err := New().Snapshot().WriteTo(&empty); err != nil {
		f.Fatal(err)
	}
	f.Add(empty.Bytes())

	f.Fuzz(func(t *testing.T, data []byte) {
		s := New()
		if _, err := s.Put(&pb.PutRequest{Key: []byte("before"), Value: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		before, _, _ := s.Hash(0)
		if err := s.Restore(bytes.NewReader(data)); err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("refused input with an error that is not ErrCorruptSnapshot: %v", err)
			}
			if after, _, _ := s.Hash(0); after != before || s.Rev() != 2 {
				t.Fatalf("a refused snapshot changed the store")
			}
			return
		}
		var again bytes.Buffer
		if _, err := s.Snapshot().WriteTo(&again); err != nil {
			t.Fatal(err)
		}
		s2 := New()
		if err := s2.Restore(&again); err != nil {
			t.Fatalf("a snapshot of an accepted snapshot does not restore: %v", err)
		}
		h1, c1, err1 := s.Hash(0)
		h2, c2, err2 := s2.Hash(0)
		if h1 != h2 || c1 != c2 || (err1 == nil) != (err2 == nil) || s.Rev() != s2.Rev() {
			t.Fatalf("round trip differs: %x/%d/%v vs %x/%d/%v", h1, c1, err1, h2, c2, err2)
		}
	})
}
