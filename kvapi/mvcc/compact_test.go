package mvcc

import (
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func TestCompactErrors(t *testing.T) {
	type step struct {
		rev  int64
		want error
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"compact 0 on a fresh store, then again", []step{{0, nil}, {0, ErrCompacted}}},
		{"negative on a fresh store", []step{{-1, ErrCompacted}}},
		{"future", []step{{6, ErrFutureRev}}},
		{"current revision", []step{{5, nil}}},
		{"then below", []step{{4, nil}, {3, ErrCompacted}}},
		{"then equal", []step{{4, nil}, {4, ErrCompacted}}},
		{"then above", []step{{2, nil}, {4, nil}, {5, nil}}},
		{"1", []step{{1, nil}, {1, ErrCompacted}, {2, nil}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			for i := range 4 {
				mustPut(t, s, fmt.Sprint("k", i%2), fmt.Sprint(i)) // revisions 2..5
			}
			want := int64(0)
			for _, st := range tc.steps {
				resp, err := s.Compact(&pb.CompactionRequest{Revision: st.rev, Physical: st.rev%2 == 0})
				if err != st.want {
					t.Fatalf("Compact(%d) = %v, want %v", st.rev, err, st.want)
				}
				if err == nil {
					want = st.rev
					if resp.Header.Revision != 5 {
						t.Fatalf("header revision %d, want 5", resp.Header.Revision)
					}
				}
				if got := s.CompactRev(); got != want {
					t.Fatalf("CompactRev() = %d, want %d", got, want)
				}
				wantRev(t, s, 5)
			}
			checkInvariants(t, s)
		})
	}
	if _, err := New().Compact(nil); err != ErrNilRequest {
		t.Fatalf("Compact(nil) = %v", err)
	}
}

// allAt returns the whole keyspace at rev as a string, or the error.
func allAt(s *Store, rev int64) string {
	resp, err := s.Range(&pb.RangeRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00"), Revision: rev})
	if err != nil {
		return err.Error()
	}
	return kvsString(toKVs(resp.Kvs))
}

// Compacting keeps every read at or above the compact revision unchanged and
// makes every read below it fail.
func TestCompactKeepsReadsAtAndAbove(t *testing.T) {
	s := New()
	// A mix of overwrites, deletes, recreations and a put+delete of one key
	// in one revision.
	script := func(i int) {
		k := fmt.Sprint("k", i%5)
		switch i % 7 {
		case 3:
			mustDel(t, s, k, "")
		case 5:
			mustTxn(t, s, &pb.TxnRequest{Success: ops(
				opTxn(&pb.TxnRequest{Success: ops(opPut(k, "tmp"))}),
				opTxn(&pb.TxnRequest{Success: ops(opDel(k, ""))}),
				opPut("other"+k, fmt.Sprint(i)),
			)})
		default:
			mustPut(t, s, k, fmt.Sprint(i))
		}
	}
	for i := range 60 {
		script(i)
	}
	cur := s.Rev()
	before := map[int64]string{}
	for rev := int64(1); rev <= cur; rev++ {
		before[rev] = allAt(s, rev)
	}
	for _, c := range []int64{3, 10, 11, 25, 40, cur - 1, cur} {
		mustCompact(t, s, c)
		checkInvariants(t, s)
		for rev := int64(1); rev <= cur; rev++ {
			got := allAt(s, rev)
			if rev < c {
				if got != ErrCompacted.Error() {
					t.Fatalf("compact %d: read at %d = %s, want compacted", c, rev, got)
				}
				continue
			}
			if got != before[rev] {
				t.Fatalf("compact %d: read at %d changed:\n%s\nwant\n%s", c, rev, got, before[rev])
			}
		}
	}
}

func TestCompactReclaims(t *testing.T) {
	s := New()
	for i := range 100 {
		mustPut(t, s, "hot", fmt.Sprint(i))
	}
	for i := range 50 {
		mustPut(t, s, fmt.Sprint("tmp", i), "x")
		mustDel(t, s, fmt.Sprint("tmp", i), "")
	}
	mustPut(t, s, "keep", "1")
	sizeBefore := s.Size()
	mustCompact(t, s, s.Rev())
	checkInvariants(t, s)
	if n := s.heads.Len(); n != 2 {
		t.Fatalf("%d keys left, want 2 (hot, keep)", n)
	}
	if n := s.hists.Len(); n != 0 {
		t.Fatalf("%d histories left", n)
	}
	if n := len(s.log); n != 1 {
		t.Fatalf("log holds %d versions, want 1 (keep, written at the compact revision)", n)
	}
	if s.Size() >= sizeBefore/10 {
		t.Fatalf("size %d after compaction, was %d", s.Size(), sizeBefore)
	}
	want := int64(len("hot")+len("99")+len("keep")+len("1")) + 2*verOverhead
	if s.Size() != want {
		t.Fatalf("size %d, want %d", s.Size(), want)
	}
}

func TestCompactTombstoneAtCompactRevision(t *testing.T) {
	s := New()
	mustPut(t, s, "a", "1") // 2
	mustPut(t, s, "b", "1") // 3
	mustDel(t, s, "a", "")  // 4
	mustCompact(t, s, 4)
	// The tombstone at exactly the compact revision stays: a watch from 4
	// still sees the delete.
	var evs []string
	if err := s.History(4, 0, func(rev int64, e []mvccpb.Event) bool {
		for evi := range e {
			ev := &e[evi]
			evs = append(evs, fmt.Sprintf("%d%s%s", rev, ev.Type, ev.Kv.Key))
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(evs) != "[4DELETEa]" {
		t.Fatalf("events from 4: %v", evs)
	}
	if s.heads.Len() != 2 {
		t.Fatalf("%d heads, want a's tombstone and b", s.heads.Len())
	}
	mustPut(t, s, "c", "1") // 5
	mustCompact(t, s, 5)
	if s.heads.Len() != 2 || getKV(t, s, "a", 5) != nil {
		t.Fatalf("tombstone below the compact revision kept")
	}
	checkInvariants(t, s)
}

func TestCompactPutDeleteInOneRevision(t *testing.T) {
	s := New()
	mustPut(t, s, "p", "0") // 2
	mustTxn(t, s, &pb.TxnRequest{Success: ops(
		opTxn(&pb.TxnRequest{Success: ops(opPut("p", "1"))}),
		opTxn(&pb.TxnRequest{Success: ops(opDel("p", ""))}),
		opPut("q", "1"),
	)}) // 3
	collect := func(from int64) string {
		var out []string
		if err := s.History(from, 0, func(rev int64, e []mvccpb.Event) bool {
			for evi := range e {
				ev := &e[evi]
				out = append(out, fmt.Sprintf("%d%s%s %v", rev, ev.Type, ev.Kv.Key, ev.PrevKv != nil))
			}
			return true
		}); err != nil {
			return err.Error()
		}
		return fmt.Sprint(out)
	}
	if got := collect(3); got != "[3PUTp true 3DELETEp true 3PUTq false]" {
		t.Fatalf("before compaction: %s", got)
	}
	mustCompact(t, s, 3)
	// The put overwritten within revision 3 is gone; prev values below the
	// compact revision are compacted.
	if got := collect(3); got != "[3DELETEp false 3PUTq false]" {
		t.Fatalf("after compaction: %s", got)
	}
	if got := collect(2); got != ErrCompacted.Error() {
		t.Fatalf("from 2: %s", got)
	}
	checkInvariants(t, s)
}

// A later compaction only visits keys written since the previous one; keys
// written long ago keep their single version.
func TestCompactIncremental(t *testing.T) {
	s := New()
	for i := range 1000 {
		mustPut(t, s, fmt.Sprint("cold", i), "v")
	}
	mustCompact(t, s, s.Rev())
	if len(s.log) != 1 {
		t.Fatalf("log %d after compaction", len(s.log))
	}
	mustPut(t, s, "cold1", "w")
	mustPut(t, s, "cold1", "x")
	mustCompact(t, s, s.Rev())
	checkInvariants(t, s)
	if got := allAt(s, s.CompactRev()); len(got) == 0 {
		t.Fatal("empty read at compact revision")
	}
	if v := getKV(t, s, "cold999", 0); v == nil || v.ModRevision != 1001 {
		t.Fatalf("cold999 = %v", v)
	}
}
