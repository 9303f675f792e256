package mvcc

import (
	"fmt"
	"reflect"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// revEvents is one revision's events, for comparisons.
type revEvents struct {
	rev int64
	evs []mvccpb.Event
}

func recordObserver(s *Store) *[]revEvents {
	var out []revEvents
	s.SetObserver(func(rev int64, evs []mvccpb.Event) {
		out = append(out, revEvents{rev, evs})
	})
	return &out
}

func history(t *testing.T, s *Store, start, end int64) []revEvents {
	t.Helper()
	var out []revEvents
	if err := s.History(start, end, func(rev int64, evs []mvccpb.Event) bool {
		out = append(out, revEvents{rev, evs})
		return true
	}); err != nil {
		t.Fatalf("History(%d, %d): %v", start, end, err)
	}
	return out
}

func evString(ev *mvccpb.Event) string {
	s := fmt.Sprintf("%s %v", ev.Type, toKV(ev.Kv))
	if ev.PrevKv != nil {
		s += fmt.Sprintf(" prev %v", toKV(ev.PrevKv))
	}
	return s
}

func TestObserverEvents(t *testing.T) {
	s := New()
	got := recordObserver(s)
	mustPut(t, s, "a", "1") // 2
	mustPut(t, s, "a", "2") // 3
	mustDel(t, s, "a", "")  // 4
	mustDel(t, s, "a", "")  // nothing
	if _, err := s.Put(putReq("b", "", ignoreValue())); err == nil {
		t.Fatal("ignore_value on a missing key succeeded")
	}
	if err := s.LeaseGrant(1, 5, 0); err != nil {
		t.Fatal(err)
	}
	mustTxn(t, s, &pb.TxnRequest{Success: ops(opGet("a", ""))})                                                                                            // nothing
	mustTxn(t, s, &pb.TxnRequest{Success: ops(opPut("b", "1"), opPut("c", "1"))})                                                                          // 5
	mustTxn(t, s, &pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: ops(opPut("c", "2"))}), opTxn(&pb.TxnRequest{Success: ops(opDel("c", ""))}))}) // 6

	want := []string{
		"2: PUT a=1(c2,m2,v1,l0)",
		"3: PUT a=2(c2,m3,v2,l0) prev a=1(c2,m2,v1,l0)",
		"4: DELETE a=(c0,m4,v0,l0) prev a=2(c2,m3,v2,l0)",
		"5: PUT b=1(c5,m5,v1,l0)",
		"5: PUT c=1(c5,m5,v1,l0)",
		"6: PUT c=2(c5,m6,v2,l0) prev c=1(c5,m5,v1,l0)",
		"6: DELETE c=(c0,m6,v0,l0) prev c=1(c5,m5,v1,l0)",
	}
	var gotS []string
	for _, re := range *got {
		for evi := range re.evs {
			ev := &re.evs[evi]
			gotS = append(gotS, fmt.Sprintf("%d: %s", re.rev, evString(ev)))
		}
	}
	if !reflect.DeepEqual(gotS, want) {
		t.Fatalf("events:\n%q\nwant\n%q", gotS, want)
	}
	// A DELETE event carries only the key and the revision.
	del := &(*got)[2].evs[0]
	if del.Kv.Value != nil || del.Kv.Version != 0 || del.Kv.CreateRevision != 0 || del.Kv.Lease != 0 {
		t.Fatalf("delete event kv = %v", del.Kv)
	}
	// History replays exactly what the observer saw.
	if h := history(t, s, 0, 0); !reflect.DeepEqual(h, *got) {
		t.Fatalf("history differs from observed events:\n%v\n%v", h, *got)
	}
	s.SetObserver(nil)
	mustPut(t, s, "z", "1")
	if len(*got) != 5 {
		t.Fatal("observer called after removal")
	}
}

func TestHistoryRanges(t *testing.T) {
	s := New()
	for i := range 20 {
		mustPut(t, s, fmt.Sprint("k", i%3), fmt.Sprint(i)) // revisions 2..21
	}
	revs := func(h []revEvents) string {
		var out []int64
		for _, re := range h {
			out = append(out, re.rev)
		}
		return fmt.Sprint(out)
	}
	tests := []struct {
		start, end int64
		want       string
	}{
		{0, 0, fmt.Sprint(seq(2, 21))},
		{1, 0, fmt.Sprint(seq(2, 21))},
		{5, 0, fmt.Sprint(seq(5, 21))},
		{5, 8, "[5 6 7]"},
		{21, 0, "[21]"},
		{22, 0, "[]"},
		{100, 0, "[]"},
		{8, 8, "[]"},
		{8, 5, "[]"},
		{20, 1000, "[20 21]"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.start, "-", tc.end), func(t *testing.T) {
			got := revs(history(t, s, tc.start, tc.end))
			if got == "[]" && tc.want == "[]" {
				return
			}
			if got != tc.want {
				t.Fatalf("revisions %s, want %s", got, tc.want)
			}
		})
	}
	// fn returning false stops the replay.
	n := 0
	if err := s.History(2, 0, func(int64, []mvccpb.Event) bool { n++; return n < 3 }); err != nil || n != 3 {
		t.Fatalf("stopped after %d calls, err %v", n, err)
	}
}

func seq(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// History spans several batches and sees each revision whole.
func TestHistoryBatches(t *testing.T) {
	s := New()
	big := &pb.TxnRequest{}
	for i := range historyBatch + 10 {
		big.Success = append(big.Success, opPut(fmt.Sprint("big", i), "v"))
	}
	mustTxn(t, s, big) // 2
	for i := range 3 * historyBatch {
		mustPut(t, s, fmt.Sprint("k", i%7), "v") // 3...
	}
	h := history(t, s, 0, 0)
	if len(h) != 3*historyBatch+1 {
		t.Fatalf("%d revisions", len(h))
	}
	if len(h[0].evs) != historyBatch+10 {
		t.Fatalf("first revision split: %d events", len(h[0].evs))
	}
	for i, re := range h {
		if re.rev != int64(i+2) {
			t.Fatalf("revision %d at %d", re.rev, i)
		}
	}
}

func TestHistoryCompacted(t *testing.T) {
	s := New()
	for i := range 10 {
		mustPut(t, s, fmt.Sprint("k", i%2), fmt.Sprint(i)) // 2..11
	}
	mustCompact(t, s, 6)
	if err := s.History(5, 0, func(int64, []mvccpb.Event) bool { return true }); err != ErrCompacted {
		t.Fatalf("History below compact revision = %v", err)
	}
	h := history(t, s, 6, 0)
	if h[0].rev != 6 || len(h) != 6 {
		t.Fatalf("history from compact revision: %v", h)
	}
	if h[0].evs[0].PrevKv != nil {
		t.Fatal("prev kv below the compact revision")
	}
	if h[1].evs[0].PrevKv == nil {
		t.Fatal("prev kv at the compact revision missing")
	}
}

func TestHistoryOvertakenByCompaction(t *testing.T) {
	s := New()
	for i := range 3 * historyBatch {
		mustPut(t, s, fmt.Sprint("k", i%5), fmt.Sprint(i))
	}
	calls := 0
	err := s.History(2, 0, func(rev int64, _ []mvccpb.Event) bool {
		calls++
		if calls == 1 {
			mustCompact(t, s, s.Rev())
		}
		return true
	})
	if err != ErrCompacted {
		t.Fatalf("History = %v after %d calls, want ErrCompacted", err, calls)
	}
	if calls != historyBatch {
		t.Fatalf("%d calls before the error, want one batch (%d)", calls, historyBatch)
	}
}
