package mvcc

import (
	"bytes"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func nOps(n int, mk func(i int) *pb.RequestOp) []*pb.RequestOp {
	out := make([]*pb.RequestOp, n)
	for i := range out {
		out[i] = mk(i)
	}
	return out
}

func nCompares(n int) []*pb.Compare {
	out := make([]*pb.Compare, n)
	for i := range out {
		out[i] = cmpVersion(fmt.Sprint("k", i), pb.Compare_GREATER, -1)
	}
	return out
}

func TestCheckTxn(t *testing.T) {
	puts := func(n int) []*pb.RequestOp {
		return nOps(n, func(i int) *pb.RequestOp { return opPut(fmt.Sprint("k", i), "v") })
	}
	tests := []struct {
		name string
		req  *pb.TxnRequest
		want error
	}{
		{"ok", &pb.TxnRequest{Compare: []*pb.Compare{cmpValue("a", pb.Compare_EQUAL, "1")}, Success: ops(opPut("a", "2")), Failure: ops(opGet("a", ""))}, nil},
		{"empty", &pb.TxnRequest{}, nil},
		{"nil", nil, ErrNilRequest},
		{"128 in every list", &pb.TxnRequest{Compare: nCompares(128), Success: puts(128), Failure: puts(128)}, nil},
		{"129 compares", &pb.TxnRequest{Compare: nCompares(129)}, ErrTooManyOps},
		{"129 success ops", &pb.TxnRequest{Success: puts(129)}, ErrTooManyOps},
		{"129 failure ops", &pb.TxnRequest{Failure: puts(129)}, ErrTooManyOps},
		{"nested txn limit shrinks by the parent's longest list", &pb.TxnRequest{
			Success: append(puts(100), opTxn(&pb.TxnRequest{Success: nOps(28, func(i int) *pb.RequestOp { return opGet(fmt.Sprint("n", i), "") })})),
		}, ErrTooManyOps},
		{"nested txn within its limit", &pb.TxnRequest{
			Success: append(puts(100), opTxn(&pb.TxnRequest{Success: nOps(27, func(i int) *pb.RequestOp { return opGet(fmt.Sprint("n", i), "") })})),
		}, nil},
		{"empty compare key", &pb.TxnRequest{Compare: []*pb.Compare{cmpValue("", pb.Compare_EQUAL, "1")}}, ErrEmptyKey},
		{"nil compare", &pb.TxnRequest{Compare: []*pb.Compare{nil}}, ErrEmptyKey},
		{"op with no request", &pb.TxnRequest{Success: ops(&pb.RequestOp{})}, ErrKeyNotFound},
		{"nil op", &pb.TxnRequest{Failure: ops(nil)}, ErrKeyNotFound},
		{"nil inner put", &pb.TxnRequest{Success: ops(&pb.RequestOp{Request: &pb.RequestOp_RequestPut{}})}, ErrKeyNotFound},
		{"nil nested txn", &pb.TxnRequest{Success: ops(&pb.RequestOp{Request: &pb.RequestOp_RequestTxn{}})}, ErrKeyNotFound},
		{"empty put key in failure branch", &pb.TxnRequest{Failure: ops(opPut("", "1"))}, ErrEmptyKey},
		{"empty delete key", &pb.TxnRequest{Success: ops(opDel("", ""))}, ErrEmptyKey},
		{"empty range key", &pb.TxnRequest{Success: ops(opGet("", ""))}, ErrEmptyKey},
		{"value with ignore_value in failure branch", &pb.TxnRequest{Failure: ops(&pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a"), Value: []byte("x"), IgnoreValue: true}}})}, ErrValueProvided},
		{"lease with ignore_lease", &pb.TxnRequest{Success: ops(&pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a"), Lease: 3, IgnoreLease: true}}})}, ErrLeaseProvided},
		{"bad sort in nested range", &pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Failure: ops(opRange(&pb.RangeRequest{Key: []byte("a"), SortOrder: 9}))}))}, ErrInvalidSortOption},
		{"static error in nested txn", &pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Compare: []*pb.Compare{cmpValue("", pb.Compare_EQUAL, "")}}))}, ErrEmptyKey},

		// Duplicate keys.
		{"put twice", &pb.TxnRequest{Success: ops(opPut("a", "1"), opPut("a", "2"))}, ErrDuplicateKey},
		{"put twice in failure", &pb.TxnRequest{Failure: ops(opPut("a", "1"), opPut("a", "2"))}, ErrDuplicateKey},
		{"put in success and failure", &pb.TxnRequest{Success: ops(opPut("a", "1")), Failure: ops(opPut("a", "2"))}, nil},
		{"put then delete", &pb.TxnRequest{Success: ops(opPut("a", "1"), opDel("a", ""))}, ErrDuplicateKey},
		{"delete then put", &pb.TxnRequest{Success: ops(opDel("a", ""), opPut("a", "1"))}, ErrDuplicateKey},
		{"put inside deleted range", &pb.TxnRequest{Success: ops(opDel("a", "c"), opPut("b", "1"))}, ErrDuplicateKey},
		{"put at deleted range end", &pb.TxnRequest{Success: ops(opDel("a", "c"), opPut("c", "1"))}, nil},
		{"put before deleted range", &pb.TxnRequest{Success: ops(opPut("b", "1"), opDel("a", "c"))}, ErrDuplicateKey},
		{"delete twice", &pb.TxnRequest{Success: ops(opDel("a", ""), opDel("a", ""))}, nil},
		{"delete from key to end does not collide (etcd reads \\x00 literally)", &pb.TxnRequest{Success: ops(opDel("a", "\x00"), opPut("b", "1"))}, nil},
		{"range and put", &pb.TxnRequest{Success: ops(opGet("a", ""), opPut("a", "1"))}, nil},
		{"nested branches may write one key", &pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: ops(opPut("a", "1")), Failure: ops(opPut("a", "2"))}))}, nil},
		{"nested put and outer put", &pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: ops(opPut("a", "1"))}), opPut("a", "2"))}, ErrDuplicateKey},
		{"outer put and nested put", &pb.TxnRequest{Success: ops(opPut("a", "2"), opTxn(&pb.TxnRequest{Failure: ops(opPut("a", "1"))}))}, ErrDuplicateKey},
		{"two nested txns put one key", &pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: ops(opPut("a", "1"))}), opTxn(&pb.TxnRequest{Success: ops(opPut("a", "1"))}))}, ErrDuplicateKey},
		{"nested else put and sibling then put", &pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: ops(opPut("a", "1"))}), opTxn(&pb.TxnRequest{Failure: ops(opPut("a", "1"))}))}, ErrDuplicateKey},
		{"outer delete and nested put", &pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: ops(opPut("b", "1"))}), opDel("a", "c"))}, ErrDuplicateKey},
		{"nested delete then sibling nested put", &pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: ops(opDel("a", ""))}), opTxn(&pb.TxnRequest{Success: ops(opPut("a", "1"))}))}, ErrDuplicateKey},
		{"nested delete and outer put", &pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Failure: ops(opDel("a", ""))}), opPut("a", "1"))}, ErrDuplicateKey},
		{"nested put then sibling nested delete (etcd accepts)", &pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: ops(opPut("a", "1"))}), opTxn(&pb.TxnRequest{Success: ops(opDel("a", ""))}))}, nil},
		{"many puts", &pb.TxnRequest{Success: puts(100)}, nil},
		{"many puts with a duplicate at the end", &pb.TxnRequest{Success: append(puts(100), opPut("k3", "x"))}, ErrDuplicateKey},
		{"many nested puts in both branches", &pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: puts(60), Failure: puts(60)}), opPut("other", "1"))}, nil},
		{"many nested puts and a sibling", &pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: puts(60), Failure: puts(50)}), opTxn(&pb.TxnRequest{Failure: ops(opPut("k55", "1"))}))}, ErrDuplicateKey},
		{"nested branch put and delete", &pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: ops(opPut("a", "1")), Failure: ops(opDel("a", ""))}))}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckTxn(tc.req, 128); err != tc.want {
				t.Fatalf("CheckTxn = %v, want %v", err, tc.want)
			}
			// The store applies the same rules itself, except the op limit.
			want := tc.want
			if want == ErrTooManyOps {
				want = nil
			}
			s := New()
			if _, err := s.Txn(tc.req); err != want {
				t.Fatalf("Txn = %v, want %v", err, want)
			}
			checkInvariants(t, s)
		})
	}
}

func TestCheckTxnDefaultLimit(t *testing.T) {
	r := &pb.TxnRequest{Compare: nCompares(129)}
	if err := CheckTxn(r, 0); err != ErrTooManyOps {
		t.Fatalf("CheckTxn(limit 0) = %v, want default limit", err)
	}
	if err := CheckTxn(r, 200); err != nil {
		t.Fatalf("CheckTxn(limit 200) = %v", err)
	}
}

func TestTxnCompare(t *testing.T) {
	s := New()
	if err := s.LeaseGrant(7, 10, 0); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", "b")               // 2
	mustPut(t, s, "k", "b", withLease(7)) // 3: k = b c2 m3 v2 l7
	mustPut(t, s, "m", "x")               // 4: m = x c4 m4 v1
	const (
		eq = pb.Compare_EQUAL
		ne = pb.Compare_NOT_EQUAL
		gt = pb.Compare_GREATER
		lt = pb.Compare_LESS
	)
	inRange := func(c *pb.Compare, end string) *pb.Compare { c.RangeEnd = []byte(end); return c }
	tests := []struct {
		name string
		cmps []*pb.Compare
		want bool
	}{
		{"value equal", []*pb.Compare{cmpValue("k", eq, "b")}, true},
		{"value equal other", []*pb.Compare{cmpValue("k", eq, "c")}, false},
		{"value not equal", []*pb.Compare{cmpValue("k", ne, "c")}, true},
		{"value not equal same", []*pb.Compare{cmpValue("k", ne, "b")}, false},
		{"value greater", []*pb.Compare{cmpValue("k", gt, "a")}, true},
		{"value greater same", []*pb.Compare{cmpValue("k", gt, "b")}, false},
		{"value less", []*pb.Compare{cmpValue("k", lt, "c")}, true},
		{"value less same", []*pb.Compare{cmpValue("k", lt, "b")}, false},
		{"value of missing key equal empty", []*pb.Compare{cmpValue("zz", eq, "")}, false},
		{"value of missing key not equal", []*pb.Compare{cmpValue("zz", ne, "x")}, false},
		{"value of missing key less", []*pb.Compare{cmpValue("zz", lt, "z")}, false},
		{"value of missing key greater", []*pb.Compare{cmpValue("zz", gt, "")}, false},
		{"version equal", []*pb.Compare{cmpVersion("k", eq, 2)}, true},
		{"version greater", []*pb.Compare{cmpVersion("k", gt, 1)}, true},
		{"version less", []*pb.Compare{cmpVersion("k", lt, 3)}, true},
		{"version not equal", []*pb.Compare{cmpVersion("k", ne, 2)}, false},
		{"version of missing key is 0", []*pb.Compare{cmpVersion("zz", eq, 0)}, true},
		{"version of missing key not greater than 0", []*pb.Compare{cmpVersion("zz", gt, 0)}, false},
		{"create equal", []*pb.Compare{cmpCreate("k", eq, 2)}, true},
		{"create greater", []*pb.Compare{cmpCreate("k", gt, 2)}, false},
		{"create of missing key is 0", []*pb.Compare{cmpCreate("zz", eq, 0)}, true},
		{"mod equal", []*pb.Compare{cmpMod("k", eq, 3)}, true},
		{"mod less", []*pb.Compare{cmpMod("k", lt, 3)}, false},
		{"mod of missing key less than 1", []*pb.Compare{cmpMod("zz", lt, 1)}, true},
		{"lease equal", []*pb.Compare{cmpLease("k", eq, 7)}, true},
		{"lease not equal 0", []*pb.Compare{cmpLease("k", ne, 0)}, true},
		{"lease of key without lease", []*pb.Compare{cmpLease("m", eq, 0)}, true},
		{"lease of missing key is 0", []*pb.Compare{cmpLease("zz", eq, 0)}, true},
		{"range: all versions positive", []*pb.Compare{inRange(cmpVersion("k", gt, 0), "n")}, true},
		{"range: one value differs", []*pb.Compare{inRange(cmpValue("k", eq, "b"), "n")}, false},
		{"range: all mods below 5", []*pb.Compare{inRange(cmpMod("k", lt, 5), "n")}, true},
		{"range: all mods below 4", []*pb.Compare{inRange(cmpMod("k", lt, 4), "n")}, false},
		{"empty range: version is 0", []*pb.Compare{inRange(cmpVersion("p", eq, 0), "q")}, true},
		{"empty range: value is false", []*pb.Compare{inRange(cmpValue("p", ne, "x"), "q")}, false},
		{"from key to end", []*pb.Compare{inRange(cmpCreate("\x00", gt, 1), "\x00")}, true},
		{"all compares must hold", []*pb.Compare{cmpVersion("k", eq, 2), cmpValue("m", eq, "x")}, true},
		{"one compare fails", []*pb.Compare{cmpVersion("k", eq, 2), cmpValue("m", eq, "y")}, false},
		{"no compares", nil, true},
		{"target and union mismatch compares against zero", []*pb.Compare{{Key: []byte("k"), Target: pb.Compare_VERSION, Result: gt, TargetUnion: &pb.Compare_Value{Value: []byte("9")}}}, true},
		{"deleted key behaves as missing", []*pb.Compare{cmpVersion("gone", eq, 0)}, true},
	}
	mustPut(t, s, "gone", "1") // 5
	mustDel(t, s, "gone", "")  // 6
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := mustTxn(t, s, &pb.TxnRequest{Compare: tc.cmps, Success: ops(opGet("k", "")), Failure: ops(opGet("m", ""), opGet("k", ""))})
			if resp.Succeeded != tc.want {
				t.Fatalf("succeeded = %v, want %v", resp.Succeeded, tc.want)
			}
			wantN := 1
			if !tc.want {
				wantN = 2
			}
			if len(resp.Responses) != wantN {
				t.Fatalf("%d responses, want %d", len(resp.Responses), wantN)
			}
			wantRev(t, s, 6)
		})
	}
}

func TestTxnComparesSeeStateBeforeTxn(t *testing.T) {
	s := New()
	resp := mustTxn(t, s, &pb.TxnRequest{Success: ops(
		opPut("flag", "1"),
		opTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{cmpValue("flag", pb.Compare_EQUAL, "1")},
			Success: ops(opPut("x", "then")),
			Failure: ops(opPut("x", "else")),
		}),
	)})
	if got := string(getKV(t, s, "x", 0).Value); got != "else" {
		t.Fatalf("x = %q, want else", got)
	}
	inner := resp.Responses[1].GetResponseTxn()
	if inner.Succeeded {
		t.Fatal("nested txn saw the outer txn's write")
	}
	if inner.Header.Revision != 0 {
		t.Fatalf("nested txn header revision %d, want 0", inner.Header.Revision)
	}
	if got := inner.Responses[0].GetResponsePut().Header.Revision; got != 2 {
		t.Fatalf("nested put header revision %d, want 2", got)
	}
	if resp.Header.Revision != 2 {
		t.Fatalf("txn header revision %d, want 2", resp.Header.Revision)
	}
}

func TestTxnReadsOwnWrites(t *testing.T) {
	s := New()
	mustPut(t, s, "b", "old") // 2
	mustPut(t, s, "c", "old") // 3
	resp := mustTxn(t, s, &pb.TxnRequest{Success: ops(
		opGet("a", ""),        // before any write: header 3
		opDel("zz", ""),       // deletes nothing: header 3
		opPut("a", "1"),       // header 4
		opGet("a", "\x00"),    // sees a=1 and b, c
		opDel("b", ""),        // header 4
		opGet("\x00", "\x00"), // sees a, c
		opRange(&pb.RangeRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00"), Revision: 3}), // the state before
		opTxn(&pb.TxnRequest{Success: ops(opGet("a", ""))}),
	)})
	r := resp.Responses
	check := func(i int, gotRev, want int64) {
		t.Helper()
		if gotRev != want {
			t.Errorf("op %d header revision %d, want %d", i, gotRev, want)
		}
	}
	check(0, r[0].GetResponseRange().Header.Revision, 3)
	if n := r[0].GetResponseRange().Count; n != 0 {
		t.Errorf("a before put: count %d", n)
	}
	check(1, r[1].GetResponseDeleteRange().Header.Revision, 3)
	check(2, r[2].GetResponsePut().Header.Revision, 4)
	check(3, r[3].GetResponseRange().Header.Revision, 4)
	if got := kvsString(toKVs(r[3].GetResponseRange().Kvs)); got != "a=1(c4,m4,v1,l0) b=old(c2,m2,v1,l0) c=old(c3,m3,v1,l0)" {
		t.Errorf("range after put: %s", got)
	}
	check(4, r[4].GetResponseDeleteRange().Header.Revision, 4)
	if got := keysOf(r[5].GetResponseRange().Kvs); got != "a,c" {
		t.Errorf("range after delete: %s", got)
	}
	if got := keysOf(r[6].GetResponseRange().Kvs); got != "b,c" {
		t.Errorf("range at the revision before the txn: %s", got)
	}
	nested := r[7].GetResponseTxn()
	check(7, nested.Header.Revision, 0)
	if got := keysOf(nested.Responses[0].GetResponseRange().Kvs); got != "a" {
		t.Errorf("nested range: %s", got)
	}
	check(-1, resp.Header.Revision, 4)
	wantRev(t, s, 4)
	checkInvariants(t, s)
}

func TestTxnStateChecks(t *testing.T) {
	setup := func(t *testing.T) *Store {
		s := New()
		mustPut(t, s, "a", "1") // 2
		mustPut(t, s, "b", "1") // 3
		mustPut(t, s, "c", "1") // 4
		mustCompact(t, s, 3)
		return s
	}
	yes := []*pb.Compare{cmpValue("a", pb.Compare_EQUAL, "1")}
	no := []*pb.Compare{cmpValue("a", pb.Compare_EQUAL, "2")}
	bad := map[string]*pb.RequestOp{
		"unknown lease":          opPut("x", "1", withLease(99)),
		"ignore_value missing":   opPut("x", "", ignoreValue()),
		"ignore_lease missing":   opPut("x", "1", ignoreLease()),
		"future revision":        opRange(&pb.RangeRequest{Key: []byte("a"), Revision: 5}),
		"compacted revision":     opRange(&pb.RangeRequest{Key: []byte("a"), Revision: 2}),
		"negative revision":      opRange(&pb.RangeRequest{Key: []byte("a"), Revision: -1}),
		"nested unknown lease":   opTxn(&pb.TxnRequest{Success: ops(opPut("y", "1", withLease(5)))}),
		"nested future revision": opTxn(&pb.TxnRequest{Failure: ops(opGet("a", "")), Success: ops(opRange(&pb.RangeRequest{Key: []byte("a"), Revision: 50}))}),
	}
	wantErrs := map[string]error{
		"unknown lease": ErrLeaseNotFound, "ignore_value missing": ErrKeyNotFound, "ignore_lease missing": ErrKeyNotFound,
		"future revision": ErrFutureRev, "compacted revision": ErrCompacted, "negative revision": ErrCompacted,
		"nested unknown lease": ErrLeaseNotFound, "nested future revision": ErrFutureRev,
	}
	for name, op := range bad {
		t.Run(name+" in the branch not taken", func(t *testing.T) {
			s := setup(t)
			resp := mustTxn(t, s, &pb.TxnRequest{Compare: yes, Success: ops(opPut("w", "1")), Failure: ops(op)})
			if !resp.Succeeded || resp.Header.Revision != 5 {
				t.Fatalf("succeeded %v at %d", resp.Succeeded, resp.Header.Revision)
			}
		})
		t.Run(name+" in the branch taken", func(t *testing.T) {
			s := setup(t)
			snapBefore := snapshotBytes(t, s)
			_, err := s.Txn(&pb.TxnRequest{Compare: no, Success: ops(opPut("w", "1")), Failure: ops(opPut("w", "1"), op)})
			wantErr(t, err, wantErrs[name])
			wantRev(t, s, 4)
			if !bytes.Equal(snapshotBytes(t, s), snapBefore) {
				t.Fatal("failed txn changed the state")
			}
		})
	}
}

func TestTxnRangeRevisionEdges(t *testing.T) {
	s := New()
	mustPut(t, s, "a", "1") // 2
	mustPut(t, s, "a", "2") // 3
	// A range at the revision the txn itself creates is a future revision.
	_, err := s.Txn(&pb.TxnRequest{Success: ops(opPut("b", "1"), opRange(&pb.RangeRequest{Key: []byte("a"), Revision: 4}))})
	wantErr(t, err, ErrFutureRev)
	wantRev(t, s, 3)
	if getKV(t, s, "b", 0) != nil {
		t.Fatal("failed txn wrote b")
	}
	// Before any compaction etcd's compact revision is -1: revision -1 reads
	// the current state, -2 is below it.
	resp := mustTxn(t, s, &pb.TxnRequest{Success: ops(opRange(&pb.RangeRequest{Key: []byte("a"), Revision: -1}))})
	if got := string(resp.Responses[0].GetResponseRange().Kvs[0].Value); got != "2" {
		t.Fatalf("revision -1 read %q", got)
	}
	_, err = s.Txn(&pb.TxnRequest{Success: ops(opRange(&pb.RangeRequest{Key: []byte("a"), Revision: -2}))})
	wantErr(t, err, ErrCompacted)
	// After a compaction every negative revision is compacted in a txn ...
	mustCompact(t, s, 2)
	_, err = s.Txn(&pb.TxnRequest{Success: ops(opRange(&pb.RangeRequest{Key: []byte("a"), Revision: -1}))})
	wantErr(t, err, ErrCompacted)
	// ... but current in a plain range.
	if got := getKV(t, s, "a", -1); string(got.Value) != "2" {
		t.Fatalf("plain range at -1 = %v", got)
	}
	// Exactly the compact revision works inside a txn too.
	resp = mustTxn(t, s, &pb.TxnRequest{Success: ops(opRange(&pb.RangeRequest{Key: []byte("a"), Revision: 2}))})
	if got := string(resp.Responses[0].GetResponseRange().Kvs[0].Value); got != "1" {
		t.Fatalf("read at compact revision = %q", got)
	}
}

func TestTxnRevisions(t *testing.T) {
	s := New()
	mustPut(t, s, "x", "0") // 2
	resp := mustTxn(t, s, &pb.TxnRequest{Success: ops(opPut("a", "1"), opPut("b", "1"), opDel("x", ""), opPut("c", "1"))})
	if resp.Header.Revision != 3 {
		t.Fatalf("txn revision %d, want 3", resp.Header.Revision)
	}
	wantRev(t, s, 3)
	for _, k := range []string{"a", "b", "c"} {
		if got := getKV(t, s, k, 0); got.ModRevision != 3 || got.CreateRevision != 3 {
			t.Fatalf("%s = %v", k, toKV(got))
		}
	}
	// Writing nothing creates no revision.
	for name, r := range map[string]*pb.TxnRequest{
		"empty":          {},
		"read only":      {Success: ops(opGet("a", ""))},
		"delete missing": {Success: ops(opDel("zz", ""), opGet("a", ""))},
		"nested nothing": {Success: ops(opTxn(&pb.TxnRequest{Success: ops(opDel("x", ""))}))},
		"failure branch": {Compare: []*pb.Compare{cmpVersion("a", pb.Compare_EQUAL, 9)}, Success: ops(opPut("a", "2")), Failure: ops(opDel("q", "r"))},
	} {
		resp := mustTxn(t, s, r)
		if resp.Header.Revision != 3 {
			t.Fatalf("%s: header revision %d, want 3", name, resp.Header.Revision)
		}
		wantRev(t, s, 3)
	}
	// A nested put then a sibling nested delete of one key: one revision, key gone.
	resp = mustTxn(t, s, &pb.TxnRequest{Success: ops(
		opTxn(&pb.TxnRequest{Success: ops(opPut("p", "1"))}),
		opTxn(&pb.TxnRequest{Success: ops(opDel("p", ""))}),
	)})
	if resp.Header.Revision != 4 || getKV(t, s, "p", 0) != nil {
		t.Fatalf("put+delete txn: revision %d, p = %v", resp.Header.Revision, getKV(t, s, "p", 0))
	}
	if got := resp.Responses[1].GetResponseTxn().Responses[0].GetResponseDeleteRange().Deleted; got != 1 {
		t.Fatalf("deleted %d, want 1", got)
	}
	checkInvariants(t, s)
}

func TestTxnNoOpLimitInStore(t *testing.T) {
	s := New()
	r := &pb.TxnRequest{Success: nOps(300, func(i int) *pb.RequestOp { return opPut(fmt.Sprint("k", i), "v") })}
	resp := mustTxn(t, s, r)
	if len(resp.Responses) != 300 || s.Rev() != 2 {
		t.Fatalf("%d responses at %d", len(resp.Responses), s.Rev())
	}
}

func TestTxnReadOnly(t *testing.T) {
	s := New()
	mustPut(t, s, "a", "1")
	r := &pb.TxnRequest{Compare: []*pb.Compare{cmpValue("a", pb.Compare_EQUAL, "1")}, Success: ops(opGet("a", "")), Failure: ops(opGet("b", ""))}
	if !TxnReadOnly(r) {
		t.Fatal("TxnReadOnly = false")
	}
	if TxnReadOnly(&pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{}))}) || TxnReadOnly(&pb.TxnRequest{Failure: ops(opDel("a", ""))}) {
		t.Fatal("TxnReadOnly = true for a writing txn")
	}
	resp := mustTxn(t, s, r)
	if !resp.Succeeded || resp.Header.Revision != 2 || len(resp.Responses[0].GetResponseRange().Kvs) != 1 {
		t.Fatalf("read-only txn: %v", resp)
	}
}

// rollback restores the exact state even after a mix of writes (the path is
// not reachable through the public API, whose checks run before any write).
func TestRollback(t *testing.T) {
	s := New()
	if err := s.LeaseGrant(1, 10, 0); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "a", "1", withLease(1))
	mustPut(t, s, "b", "1")
	mustPut(t, s, "b", "2")
	mustDel(t, s, "b", "")
	before := snapshotBytes(t, s)
	h1, _, _ := s.Hash(0)

	s.mu.Lock()
	w := s.begin()
	s.applyPut(w, putReq("a", "2"))
	s.applyPut(w, putReq("b", "3", withLease(1)))
	s.applyPut(w, putReq("n", "new", withLease(1)))
	s.applyDelete(w, delReq("a", ""))
	s.rollback(w)
	s.mu.Unlock()

	if !bytes.Equal(snapshotBytes(t, s), before) {
		t.Fatal("rollback left changes")
	}
	if h2, _, _ := s.Hash(0); h1 != h2 {
		t.Fatal("hash changed")
	}
	l, _ := s.Lease(1)
	if len(l.Keys) != 1 || string(l.Keys[0]) != "a" {
		t.Fatalf("lease keys after rollback: %q", l.Keys)
	}
	checkInvariants(t, s)
}

func TestTxnEventsOrder(t *testing.T) {
	s := New()
	mustPut(t, s, "z", "0") // 2
	var got []string
	s.SetObserver(func(rev int64, evs []mvccpb.Event) {
		for evi := range evs {
			ev := &evs[evi]
			got = append(got, fmt.Sprintf("%d:%s:%s", rev, ev.Type, ev.Kv.Key))
		}
	})
	mustTxn(t, s, &pb.TxnRequest{Success: ops(opPut("b", "1"), opDel("z", ""), opPut("a", "1"))})
	want := "[3:PUT:b 3:DELETE:z 3:PUT:a]"
	if fmt.Sprint(got) != want {
		t.Fatalf("events %v, want %s", got, want)
	}
}

// The branches of a txn nested two levels deep may put the same key: the set
// of keys the inner txn writes must list it once.
func TestCheckTxnDeepNestedBranchesSameKey(t *testing.T) {
	put := func(k string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k)}}}
	}
	txn := func(then, els []*pb.RequestOp) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: then, Failure: els}}}
	}
	inner := txn([]*pb.RequestOp{put("x")}, []*pb.RequestOp{put("x")})
	r := &pb.TxnRequest{Success: []*pb.RequestOp{txn([]*pb.RequestOp{inner}, nil)}}
	if err := CheckTxn(r, 0); err != nil {
		t.Fatalf("CheckTxn = %v, want nil (etcd accepts it)", err)
	}
	// A sibling put of the same key is still a duplicate.
	r.Success = append(r.Success, put("x"))
	if err := CheckTxn(r, 0); err != ErrDuplicateKey {
		t.Fatalf("CheckTxn with a sibling put = %v, want ErrDuplicateKey", err)
	}
}
