package mvcc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// reload exports a snapshot of s through Records and Leases and loads it
// into a new store.
func reload(t *testing.T, s *Store) *Store {
	t.Helper()
	sn := s.Snapshot()
	l := NewLoader()
	err := sn.Leases(func(li LeaseInfo) error { return l.Lease(li.ID, li.TTL, li.RemainingTTL) })
	if err != nil {
		t.Fatalf("leases: %v", err)
	}
	last := int64(0)
	err = sn.Records(func(r *Record) error {
		if r.ModRev < last {
			t.Fatalf("Records: revision %d after %d", r.ModRev, last)
		}
		last = r.ModRev
		return l.Add(r)
	})
	if err != nil {
		t.Fatalf("records: %v", err)
	}
	r, err := l.Store(sn.Rev(), sn.CompactRev())
	if err != nil {
		t.Fatalf("Store: %v", err)
	}
	return r
}

// Exporting and loading rebuilds the same store: every read, hash, history
// and snapshot byte agrees, and both go on alike.
func TestLoadRoundTrip(t *testing.T) {
	for name, mk := range map[string]func(t *testing.T) *Store{
		"empty":          func(*testing.T) *Store { return New() },
		"rich":           richStore,
		"compact 0":      func(t *testing.T) *Store { s := New(); mustCompact(t, s, 0); return s },
		"compact at rev": func(t *testing.T) *Store { s := richStore(t); mustCompact(t, s, s.Rev()); return s },
	} {
		t.Run(name, func(t *testing.T) {
			s := mk(t)
			r := reload(t, s)
			sameStore(t, s, r)
			for _, st := range []*Store{s, r} {
				mustPut(t, st, "k3", "next")
				mustDel(t, st, "k4", "")
				mustCompact(t, st, st.Rev()-1)
			}
			sameStore(t, s, r)
		})
	}
}

// Random histories survive export and load at every point.
func TestLoadRandomized(t *testing.T) {
	seeds, steps := 8, 400
	if testing.Short() {
		seeds, steps = 2, 200
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			g := &opGen{r: rand.New(rand.NewPCG(uint64(seed), 7)), keys: []string{"a", "b", "c", "d", "e", "f"}}
			s := New()
			for i := range steps {
				applyRop(s, g.next(s.Rev(), s.CompactRev()))
				if i%97 == 0 {
					sameStore(t, s, reload(t, s))
				}
			}
			sameStore(t, s, reload(t, s))
		})
	}
}

// The export is a snapshot: writes after it do not show.
func TestRecordsIsolation(t *testing.T) {
	s := richStore(t)
	sn := s.Snapshot()
	before := snapshotBytes(t, s)
	mustPut(t, s, "k0", "later")
	mustCompact(t, s, s.Rev())
	l := NewLoader()
	if err := sn.Leases(func(li LeaseInfo) error { return l.Lease(li.ID, li.TTL, li.RemainingTTL) }); err != nil {
		t.Fatal(err)
	}
	if err := sn.Records(l.Add); err != nil {
		t.Fatal(err)
	}
	r, err := l.Store(sn.Rev(), sn.CompactRev())
	if err != nil {
		t.Fatal(err)
	}
	if string(snapshotBytes(t, r)) != string(before) {
		t.Fatal("loaded store differs from the store at the snapshot")
	}
}

func TestRecordsStopsOnError(t *testing.T) {
	s := richStore(t)
	boom := errors.New("boom")
	n := 0
	err := s.Snapshot().Records(func(*Record) error {
		n++
		if n == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || n != 3 {
		t.Fatalf("err %v after %d records", err, n)
	}
	if err := s.Snapshot().Leases(func(LeaseInfo) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Leases err %v", err)
	}
}

func put(k string, create, mod, version int64) *Record {
	return &Record{Key: []byte(k), Value: []byte("v"), CreateRev: create, ModRev: mod, Version: version}
}

func tomb(k string, mod int64) *Record { return &Record{Key: []byte(k), ModRev: mod} }

// The loader refuses histories no store could have written, at Add or at
// Store, with ErrCorruptSnapshot.
func TestLoaderRejectsInconsistentHistory(t *testing.T) {
	type load struct {
		leases  [][3]int64
		recs    []*Record
		rev     int64
		compact int64
	}
	cases := map[string]load{
		"empty key":              {recs: []*Record{put("", 2, 2, 1)}, rev: 2, compact: -1},
		"revision 0":             {recs: []*Record{put("a", 0, 0, 1)}, rev: 2, compact: -1},
		"revisions go back":      {recs: []*Record{put("a", 3, 3, 1), put("b", 2, 2, 1)}, rev: 3, compact: -1},
		"version skips":          {recs: []*Record{put("a", 2, 2, 1), put("a", 2, 3, 3)}, rev: 3, compact: -1},
		"create changes":         {recs: []*Record{put("a", 2, 2, 1), put("a", 3, 3, 2)}, rev: 3, compact: -1},
		"two puts in a revision": {recs: []*Record{put("a", 2, 2, 1), put("a", 2, 2, 2)}, rev: 2, compact: -1},
		"deleted twice":          {recs: []*Record{put("a", 2, 2, 1), tomb("a", 3), tomb("a", 4)}, rev: 4, compact: -1},
		"recreated at version 2": {recs: []*Record{put("a", 2, 2, 1), tomb("a", 3), put("a", 2, 4, 2)}, rev: 4, compact: -1},
		"version 1 not created":  {recs: []*Record{put("a", 1, 2, 1)}, rev: 2, compact: -1},
		"created in the future":  {recs: []*Record{put("a", 5, 2, 3)}, rev: 5, compact: 4},
		"tombstone with value":   {recs: []*Record{put("a", 2, 2, 1), {Key: []byte("a"), Value: []byte("x"), ModRev: 3}}, rev: 3, compact: -1},
		"missing history":        {recs: []*Record{put("a", 2, 5, 3)}, rev: 5, compact: -1},
		"missing history above":  {recs: []*Record{put("a", 2, 5, 3)}, rev: 6, compact: 4},
		"first seen tombstone":   {recs: []*Record{tomb("a", 5)}, rev: 5, compact: 4},
		"unknown lease":          {recs: []*Record{{Key: []byte("a"), CreateRev: 2, ModRev: 2, Version: 1, Lease: 7}}, rev: 2, compact: -1},
		"revision below last":    {recs: []*Record{put("a", 2, 2, 1)}, rev: 1, compact: -1},
		"compact above revision": {recs: []*Record{put("a", 2, 2, 1)}, rev: 2, compact: 3},
		"lease 0":                {leases: [][3]int64{{0, 10, 0}}, rev: 1, compact: -1},
		"lease twice":            {leases: [][3]int64{{4, 10, 0}, {4, 10, 0}}, rev: 1, compact: -1},
		"lease TTL too large":    {leases: [][3]int64{{4, MaxLeaseTTL + 1, 0}}, rev: 1, compact: -1},
		"negative remaining":     {leases: [][3]int64{{4, 10, -1}}, rev: 1, compact: -1},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			l := NewLoader()
			var err error
			for _, le := range c.leases {
				if err = l.Lease(le[0], le[1], le[2]); err != nil {
					break
				}
			}
			for _, r := range c.recs {
				if err != nil {
					break
				}
				err = l.Add(r)
			}
			if err == nil {
				_, err = l.Store(c.rev, c.compact)
			}
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("err %v, want ErrCorruptSnapshot", err)
			}
		})
	}
}

// etcd's files: a key whose older versions were compacted starts mid-history
// at or below the compact revision, a tombstone may be kept at the compact
// revision, and an unfinished compaction leaves versions below it that the
// load compacts away.
func TestLoaderAcceptsCompactedHistory(t *testing.T) {
	l := NewLoader()
	if err := l.Lease(7, 30, 12); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Record{
		put("old", 2, 4, 3),  // continues a compacted history; superseded below the compaction
		put("gone", 3, 5, 2), // continues, then is deleted below the compaction
		tomb("gone", 6),
		put("old", 2, 7, 4), // what a read at the compact revision sees: kept
		tomb("edge", 8),     // a tombstone kept at the compact revision
		put("old", 2, 9, 5),
		put("new", 10, 10, 1),
		{Key: []byte("leased"), Value: []byte("x"), CreateRev: 11, ModRev: 11, Version: 1, Lease: 7},
	} {
		if err := l.Add(r); err != nil {
			t.Fatalf("add %q@%d: %v", r.Key, r.ModRev, err)
		}
	}
	s, err := l.Store(12, 8)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, s)
	if s.Rev() != 12 || s.CompactRev() != 8 {
		t.Fatalf("rev %d compact %d", s.Rev(), s.CompactRev())
	}
	kv := getKV(t, s, "old", 8)
	if kv == nil || kv.ModRevision != 7 || kv.Version != 4 || kv.CreateRevision != 2 {
		t.Fatalf("old at 8 = %v", kv)
	}
	if kv := getKV(t, s, "gone", 8); kv != nil {
		t.Fatalf("gone at 8 = %v", kv)
	}
	if _, err := s.Range(&pb.RangeRequest{Key: []byte("old"), Revision: 7}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("read below the compaction: %v", err)
	}
	if li, ok := s.Lease(7); !ok || li.RemainingTTL != 12 || len(li.Keys) != 1 {
		t.Fatalf("lease 7 = %+v", li)
	}
	// The survivors: old's base version and later one, edge's tombstone,
	// new, leased.
	if n := len(s.Snapshot().log); n != 4 {
		t.Fatalf("log has %d versions, want 4", n)
	}
}
