package difftest

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// scenarios are scripted request sequences aimed at the corners of etcd's
// semantics that are easy to get wrong. Each runs on a fresh pair of
// servers; every answer is compared, and r.expect/r.claim also pin down what
// etcd itself answers, so that a scenario cannot silently stop testing what
// its comments say.
var scenarios = []struct {
	name string
	run  func(r *runner)
}{
	{"revisions", scenarioRevisions},
	{"txn-compares-see-state-before-txn", scenarioTxnCompares},
	{"txn-reads-own-writes", scenarioTxnOwnWrites},
	{"txn-checks-per-branch", scenarioTxnBranchChecks},
	{"txn-op-limits", scenarioTxnLimits},
	{"txn-empty-and-odd-ops", scenarioTxnOddOps},
	{"txn-duplicate-keys", scenarioTxnDuplicates},
	{"compare-missing-keys-and-ranges", scenarioCompareMissing},
	{"range-options", scenarioRangeOptions},
	{"range-ends", scenarioRangeEnds},
	{"negative-and-future-revisions", scenarioRevisionBounds},
	{"compaction", scenarioCompaction},
	{"failed-txn-changes-nothing", scenarioFailedTxnAtomic},
	{"request-size-limits", scenarioSizeLimits},
	{"leases", scenarioLeases},
	{"watch", scenarioWatch},
}

func TestScenarios(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			r := newRunner(t)
			r.label = "scenario " + sc.name
			sc.run(r)
			t.Logf("%d ops match", r.n)
		})
	}
}

// claim fails the scenario when etcd's answer does not have a property the
// scenario relies on.
func (r *runner) claim(ok bool, what string, res result) {
	r.t.Helper()
	if !ok {
		r.t.Fatalf("op %d: etcd's answer does not show that %s: %s", r.n-1, what, res)
	}
}

// ok is step that also requires etcd to succeed.
func (r *runner) ok(req message) result {
	r.t.Helper()
	res := r.step(req)
	r.claim(res.resp != nil, "the request succeeds", res)
	return res
}

func rev(res result) int64 { return res.header().GetRevision() }

const (
	errEmptyKey    = "etcdserver: key is not provided"
	errKeyNotFound = "etcdserver: key not found"
	errDuplicate   = "etcdserver: duplicate key given in txn request"
	errTooManyOps  = "etcdserver: too many operations in txn request"
	errCompacted   = "etcdserver: mvcc: required revision has been compacted"
	errFutureRev   = "etcdserver: mvcc: required revision is a future revision"
	errSortOption  = "etcdserver: invalid sort option"
	errValueGiven  = "etcdserver: value is provided"
	errLeaseGiven  = "etcdserver: lease is provided"
	errNoLease     = "etcdserver: requested lease not found"
	errTooLarge    = "etcdserver: request is too large"
)

func scenarioRevisions(r *runner) {
	res := r.ok(get("a"))
	r.claim(rev(res) == 1, "a fresh store is at revision 1", res)
	res = r.ok(&pb.DeleteRangeRequest{Key: []byte("missing")})
	r.claim(rev(res) == 1, "deleting a missing key creates no revision", res)
	res = r.ok(&pb.TxnRequest{Success: ops(opDel(del("missing", "")), opDel(del("a", "z")), opGet(get("a")))})
	r.claim(rev(res) == 1, "a Txn whose writes touch nothing creates no revision", res)
	r.ok(put("a", "1"))
	res = r.ok(&pb.PutRequest{Key: []byte("a"), Value: []byte("1"), PrevKv: true})
	r.claim(rev(res) == 3, "a Put of an identical value creates a revision", res)
	res = r.ok(get("a"))
	r.claim(res.resp.(*pb.RangeResponse).Kvs[0].Version == 2, "a Put of an identical value bumps the version", res)
	res = r.ok(&pb.TxnRequest{Success: ops(opPut(put("b", "1")), opPut(put("c", "1")), opDel(del("a", "")), opPut(put("d", "")))})
	r.claim(rev(res) == 4, "a Txn is one revision however many keys it writes", res)
	r.ok(allKeys())
	r.ok(&pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, PrevKv: true})
	r.ok(put("a", "again")) // re-create: new create revision, version 1
	r.ok(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: 3})
	r.ok(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: 4})
	r.ok(allKeys())
}

func scenarioTxnCompares(r *runner) {
	r.ok(put("flag", "0"))
	res := r.ok(&pb.TxnRequest{Success: ops(
		opPut(put("flag", "1")),
		opTxn(&pb.TxnRequest{
			Compare: cmps(cmpValue("flag", pb.Compare_EQUAL, "1")),
			Success: ops(opPut(put("branch", "then"))),
			Failure: ops(opPut(put("branch", "else"))),
		}),
	)})
	inner := res.resp.(*pb.TxnResponse).Responses[1].GetResponseTxn()
	r.claim(inner != nil && !inner.Succeeded, "nested compares see the state before the outer Txn", res)
	r.ok(get("branch"))
	// Compares on a key the outer Txn deletes, and on one it creates.
	r.ok(&pb.TxnRequest{
		Compare: cmps(cmpVersion("flag", pb.Compare_GREATER, 0)),
		Success: ops(
			opDel(del("flag", "")),
			opPut(put("new", "x")),
			opTxn(&pb.TxnRequest{
				Compare: cmps(cmpVersion("flag", pb.Compare_GREATER, 0), cmpVersion("new", pb.Compare_EQUAL, 0)),
				Success: ops(opGet(getRange("a", "z"))),
				Failure: ops(opPut(put("wrong", "x"))),
			}),
		),
	})
	r.ok(allKeys())
	// Nested three deep, each level writing what the next compares.
	r.ok(&pb.TxnRequest{Success: ops(
		opPut(put("l1", "1")),
		opTxn(&pb.TxnRequest{
			Compare: cmps(cmpVersion("l1", pb.Compare_EQUAL, 0)),
			Success: ops(opPut(put("l2", "2")), opTxn(&pb.TxnRequest{
				Compare: cmps(cmpVersion("l2", pb.Compare_EQUAL, 0), cmpVersion("l1", pb.Compare_EQUAL, 0)),
				Success: ops(opPut(put("l3", "3")), opGet(getRange("l", "m"))),
				Failure: ops(opPut(put("l3", "x"))),
			})),
		}),
	)})
	r.ok(allKeys())
}

func scenarioTxnOwnWrites(r *runner) {
	r.ok(put("a", "0"))
	r.ok(put("x", "0"))
	res := r.ok(&pb.TxnRequest{Success: ops(
		opGet(get("a")),
		opPut(&pb.PutRequest{Key: []byte("a"), Value: []byte("1"), PrevKv: true}),
		opGet(get("a")),
		opDel(&pb.DeleteRangeRequest{Key: []byte("x"), PrevKv: true}),
		opGet(get("x")),
		opPut(put("b", "1")),
		opGet(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true}),
		opTxn(&pb.TxnRequest{Success: ops(opGet(get("b")), opPut(put("c", "1")))}),
		opGet(getRange("a", "d")),
	)})
	tr := res.resp.(*pb.TxnResponse)
	r.claim(tr.Responses[1].GetResponsePut().Header.Revision == 4, "inner put responses carry the new revision", res)
	r.claim(tr.Responses[7].GetResponseTxn().Header.GetRevision() == 0, "a nested Txn's header has revision 0", res)
	// Ignore_value and ignore_lease on a key the Txn itself created.
	r.ok(&pb.TxnRequest{Success: ops(opPut(put("n", "v")), opTxn(&pb.TxnRequest{Success: ops(opGet(get("n")))}))})
	r.ok(&pb.TxnRequest{Success: ops(opPut(&pb.PutRequest{Key: []byte("n"), IgnoreValue: true, PrevKv: true}), opGet(get("n")))})
	r.ok(&pb.TxnRequest{Success: ops(opPut(&pb.PutRequest{Key: []byte("n"), Value: []byte("w"), IgnoreLease: true}), opGet(get("n")))})
	r.ok(allKeys())
}

func scenarioTxnBranchChecks(r *runner) {
	for i := range 5 {
		r.ok(put("k", string(rune('a'+i))))
	}
	r.ok(&pb.CompactionRequest{Revision: 4})
	never := cmps(cmpVersion("k", pb.Compare_EQUAL, 999))
	// State-dependent checks apply only to the branch taken.
	r.ok(&pb.TxnRequest{Compare: never, Success: ops(opGet(getAt("k", 2))), Failure: ops(opPut(put("x", "1")))})
	r.ok(&pb.TxnRequest{Compare: never, Success: ops(opGet(getAt("k", 100))), Failure: ops(opGet(get("k")))})
	r.ok(&pb.TxnRequest{Compare: never, Success: ops(opPut(&pb.PutRequest{Key: []byte("missing"), IgnoreValue: true})), Failure: ops(opGet(get("k")))})
	r.ok(&pb.TxnRequest{Compare: never, Success: ops(opPut(&pb.PutRequest{Key: []byte("k"), Lease: 0xbad})), Failure: ops(opGet(get("k")))})
	r.ok(&pb.TxnRequest{Compare: never, Success: ops(opGet(getAt("k", -1))), Failure: ops(opGet(get("k")))})
	r.expect(&pb.TxnRequest{Compare: never, Failure: ops(opGet(getAt("k", 2)))}, codes.OutOfRange, errCompacted)
	r.expect(&pb.TxnRequest{Compare: never, Failure: ops(opPut(&pb.PutRequest{Key: []byte("missing"), IgnoreValue: true}))}, codes.InvalidArgument, errKeyNotFound)
	r.expect(&pb.TxnRequest{Success: ops(opPut(&pb.PutRequest{Key: []byte("missing"), IgnoreLease: true}))}, codes.InvalidArgument, errKeyNotFound)
	r.expect(&pb.TxnRequest{Success: ops(opPut(&pb.PutRequest{Key: []byte("k"), Lease: 0xbad}))}, codes.NotFound, errNoLease)
	// Static checks apply to both branches.
	r.expect(&pb.TxnRequest{Compare: never, Success: ops(opGet(get(""))), Failure: ops(opGet(get("k")))}, codes.InvalidArgument, errEmptyKey)
	r.expect(&pb.TxnRequest{Success: ops(opGet(get("k"))), Failure: ops(opGet(&pb.RangeRequest{Key: []byte("k"), SortOrder: 7}))}, codes.InvalidArgument, errSortOption)
	r.expect(&pb.TxnRequest{Failure: ops(opPut(&pb.PutRequest{Key: []byte("k"), Value: []byte("v"), IgnoreValue: true}))}, codes.InvalidArgument, errValueGiven)
	r.expect(&pb.TxnRequest{Failure: ops(opPut(&pb.PutRequest{Key: []byte("k"), Lease: 5, IgnoreLease: true}))}, codes.InvalidArgument, errLeaseGiven)
	r.expect(&pb.TxnRequest{Failure: ops(opDel(del("", "z")))}, codes.InvalidArgument, errEmptyKey)
	r.expect(&pb.TxnRequest{Compare: cmps(cmpVersion("", pb.Compare_EQUAL, 0))}, codes.InvalidArgument, errEmptyKey)
	// A Range at the revision a writing Txn would create is in the future.
	cur := rev(r.ok(get("k")))
	r.expect(&pb.TxnRequest{Success: ops(opPut(put("y", "1")), opGet(getAt("k", cur+1)))}, codes.OutOfRange, errFutureRev)
	r.expect(&pb.TxnRequest{Success: ops(opGet(getAt("k", cur+1)))}, codes.OutOfRange, errFutureRev)
	r.ok(&pb.TxnRequest{Success: ops(opPut(put("y", "1")), opGet(getAt("k", cur)), opGet(getAt("k", 4)))})
	// Errors are checked in order: a static error in the failure list wins
	// over a state error in the success list.
	r.step(&pb.TxnRequest{Success: ops(opGet(getAt("k", 1))), Failure: ops(opGet(get("")))})
	r.step(&pb.TxnRequest{Success: ops(opGet(getAt("k", 1)), opGet(getAt("k", 1000)))})
	r.step(&pb.TxnRequest{Success: ops(opPut(&pb.PutRequest{Key: []byte("k"), Lease: 0xbad}), opGet(getAt("k", 1)))})
	r.step(&pb.TxnRequest{Success: ops(opGet(getAt("k", 1)), opPut(&pb.PutRequest{Key: []byte("k"), Lease: 0xbad}))})
	r.step(&pb.TxnRequest{Success: ops(opPut(&pb.PutRequest{Key: []byte("missing"), IgnoreValue: true}), opPut(&pb.PutRequest{Key: []byte("k"), Lease: 0xbad}))})
	r.step(&pb.TxnRequest{Success: ops(opGet(getAt("k", 1)), opPut(&pb.PutRequest{Key: []byte("missing"), IgnoreValue: true}))})
	r.ok(allKeys())
}

func scenarioTxnLimits(r *runner) {
	r.ok(&pb.TxnRequest{Compare: versionCompares(128), Success: rangeOps(128), Failure: rangeOps(128)})
	r.expect(&pb.TxnRequest{Compare: versionCompares(129)}, codes.InvalidArgument, errTooManyOps)
	r.expect(&pb.TxnRequest{Success: rangeOps(129)}, codes.InvalidArgument, errTooManyOps)
	r.expect(&pb.TxnRequest{Failure: rangeOps(129)}, codes.InvalidArgument, errTooManyOps)
	// 128 writes in one Txn.
	var puts []*pb.RequestOp
	for i := range 128 {
		puts = append(puts, opPut(put(strings.Repeat("p", 1+i%8)+string(rune('A'+i/8)), "v")))
	}
	r.ok(&pb.TxnRequest{Success: puts})
	// A nested Txn's lists are limited by what the outer lists leave.
	nested := func(outer, inner int) *pb.TxnRequest {
		return &pb.TxnRequest{Success: append(rangeOps(outer-1), opTxn(&pb.TxnRequest{Success: rangeOps(inner)}))}
	}
	r.step(nested(100, 28))
	r.step(nested(100, 29))
	r.step(nested(64, 64))
	r.step(nested(64, 65))
	r.step(nested(128, 0))
	r.step(nested(128, 1))
	r.step(&pb.TxnRequest{Compare: versionCompares(100), Success: ops(opTxn(&pb.TxnRequest{Compare: versionCompares(29)}))})
	r.step(&pb.TxnRequest{Compare: versionCompares(100), Success: ops(opTxn(&pb.TxnRequest{Failure: rangeOps(28)}))})
	r.ok(allKeys())
}

func scenarioTxnOddOps(r *runner) {
	r.ok(put("a", "1"))
	r.expect(&pb.TxnRequest{Success: ops(&pb.RequestOp{})}, codes.InvalidArgument, errKeyNotFound)
	r.expect(&pb.TxnRequest{Compare: cmps(cmpVersion("a", pb.Compare_EQUAL, 99)), Success: ops(opGet(get("a"))), Failure: ops(opGet(get("a")), &pb.RequestOp{})}, codes.InvalidArgument, errKeyNotFound)
	r.expect(&pb.TxnRequest{Success: ops(opGet(get("a")), opTxn(&pb.TxnRequest{Failure: ops(&pb.RequestOp{})}))}, codes.InvalidArgument, errKeyNotFound)
	r.ok(&pb.TxnRequest{})                                                               // nothing at all
	r.ok(&pb.TxnRequest{Compare: cmps(cmpVersion("a", pb.Compare_EQUAL, 1))})            // compares only
	r.ok(&pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{}), opTxn(&pb.TxnRequest{}))}) // empty nested
	// Compares with targets and unions that do not match, or unknown values.
	odd := []*pb.Compare{
		{Key: []byte("a"), Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte("1")}},
		{Key: []byte("a"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Version{Version: 1}},
		{Key: []byte("a"), Target: pb.Compare_VALUE, Result: pb.Compare_NOT_EQUAL},
		{Key: []byte("a"), Target: pb.Compare_MOD, Result: pb.Compare_GREATER},
		{Key: []byte("a"), Target: pb.Compare_LEASE, Result: pb.Compare_EQUAL},
		{Key: []byte("a"), Target: 9, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Version{Version: 1}},
		{Key: []byte("a"), Target: pb.Compare_VERSION, Result: 9, TargetUnion: &pb.Compare_Version{Version: 1}},
		{Key: []byte("missing"), Target: 9, Result: 9},
	}
	for _, c := range odd {
		r.step(&pb.TxnRequest{Compare: cmps(c), Success: ops(opGet(get("a"))), Failure: ops(opGet(get("missing")))})
	}
	// A Put with neither value nor key options, and a Range of one key with
	// an equal range end.
	r.ok(&pb.PutRequest{Key: []byte("empty")})
	r.ok(getRange("a", "a"))
	r.ok(allKeys())
}

func scenarioTxnDuplicates(r *runner) {
	r.ok(put("a", "0"))
	r.ok(put("b", "0"))
	r.expect(&pb.TxnRequest{Success: ops(opPut(put("a", "1")), opPut(put("a", "2")))}, codes.InvalidArgument, errDuplicate)
	r.expect(&pb.TxnRequest{Success: ops(opDel(del("a", "c")), opPut(put("b", "1")))}, codes.InvalidArgument, errDuplicate)
	r.expect(&pb.TxnRequest{Success: ops(opPut(put("b", "1")), opDel(del("a", "c")))}, codes.InvalidArgument, errDuplicate)
	r.expect(&pb.TxnRequest{Failure: ops(opDel(del("b", "")), opPut(put("b", "1")))}, codes.InvalidArgument, errDuplicate)
	r.expect(&pb.TxnRequest{Success: ops(opPut(put("a", "1")), opTxn(&pb.TxnRequest{Success: ops(opPut(put("a", "2")))}))}, codes.InvalidArgument, errDuplicate)
	r.expect(&pb.TxnRequest{Success: ops(opDel(del("a", "")), opTxn(&pb.TxnRequest{Failure: ops(opPut(put("a", "2")))}))}, codes.InvalidArgument, errDuplicate)
	// The then and else branches of one nested Txn may write the same key.
	r.ok(&pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{
		Compare: cmps(cmpValue("a", pb.Compare_EQUAL, "0")),
		Success: ops(opPut(put("a", "then"))),
		Failure: ops(opPut(put("a", "else"))),
	}))})
	// Also when that Txn is nested two levels deep.
	r.ok(&pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{
		Success: ops(opPut(put("a", "then"))),
		Failure: ops(opPut(put("a", "else"))),
	}))}))})
	// ... but two nested Txns may not.
	r.step(&pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: ops(opPut(put("a", "1")))}), opTxn(&pb.TxnRequest{Failure: ops(opPut(put("a", "2")))}))})
	// A nested delete covering an outer put.
	r.step(&pb.TxnRequest{Success: ops(opPut(put("a", "1")), opTxn(&pb.TxnRequest{Success: ops(opDel(del("a", "b")))}))})
	// Deletes may overlap each other, and reads are never duplicates.
	r.ok(&pb.TxnRequest{Success: ops(opDel(del("a", "c")), opDel(del("b", "")), opGet(get("a")), opGet(get("a")))})
	r.ok(&pb.TxnRequest{Success: ops(opPut(put("a", "x")), opGet(get("a")), opGet(get("a")))})
	// Puts in the success and failure lists of the outer Txn.
	r.ok(&pb.TxnRequest{Success: ops(opPut(put("a", "s"))), Failure: ops(opPut(put("a", "f")))})
	// Deletes to the end ("\x00") and of every key do not count as covering
	// puts in etcd's duplicate check.
	r.step(&pb.TxnRequest{Success: ops(opDel(del("a", "\x00")), opPut(put("b", "1")))})
	r.step(&pb.TxnRequest{Success: ops(opDel(del("\x00", "\x00")), opPut(put("a", "2")))})
	r.step(&pb.TxnRequest{Success: ops(opDel(del("b", "a")), opPut(put("b", "2")))}) // range end before key
	r.ok(allKeys())
}

func scenarioCompareMissing(r *runner) {
	r.ok(put("a", "1"))
	r.ok(put("c", "3"))
	for _, res := range []pb.Compare_CompareResult{pb.Compare_EQUAL, pb.Compare_NOT_EQUAL, pb.Compare_LESS, pb.Compare_GREATER} {
		got := r.ok(&pb.TxnRequest{Compare: cmps(cmpValue("missing", res, "x"))})
		r.claim(!got.resp.(*pb.TxnResponse).Succeeded, "a VALUE compare on a missing key is false", got)
		r.ok(&pb.TxnRequest{Compare: cmps(cmpValue("missing", res, ""))})
		r.ok(&pb.TxnRequest{Compare: cmps(cmpVersion("missing", res, 0))})
		r.ok(&pb.TxnRequest{Compare: cmps(cmpCreate("missing", res, 0))})
		r.ok(&pb.TxnRequest{Compare: cmps(cmpMod("missing", res, 0))})
		r.ok(&pb.TxnRequest{Compare: cmps(cmpLease("missing", res, 0))})
		r.ok(&pb.TxnRequest{Compare: cmps(cmpVersion("a", res, 1))})
		r.ok(&pb.TxnRequest{Compare: cmps(cmpValue("a", res, "1"))})
		r.ok(&pb.TxnRequest{Compare: cmps(cmpValue("a", res, "0"))})
		r.ok(&pb.TxnRequest{Compare: cmps(cmpValue("a", res, "10"))})
		r.ok(&pb.TxnRequest{Compare: cmps(cmpMod("a", res, 2))})
		r.ok(&pb.TxnRequest{Compare: cmps(cmpCreate("c", res, 2))})
		r.ok(&pb.TxnRequest{Compare: cmps(cmpLease("a", res, 0))})
		// Range compares: every key in the range must satisfy the compare;
		// an empty range compares like one missing key.
		r.ok(&pb.TxnRequest{Compare: cmps(withEnd(cmpVersion("a", res, 1), "d"))})
		r.ok(&pb.TxnRequest{Compare: cmps(withEnd(cmpValue("a", res, "1"), "d"))})
		r.ok(&pb.TxnRequest{Compare: cmps(withEnd(cmpValue("a", res, "2"), "d"))})
		r.ok(&pb.TxnRequest{Compare: cmps(withEnd(cmpVersion("x", res, 0), "z"))})
		r.ok(&pb.TxnRequest{Compare: cmps(withEnd(cmpValue("x", res, ""), "z"))})
		r.ok(&pb.TxnRequest{Compare: cmps(withEnd(cmpMod("a", res, 2), "\x00"))})
		r.ok(&pb.TxnRequest{Compare: cmps(withEnd(cmpCreate("\x00", res, 3), "\x00"))})
		r.ok(&pb.TxnRequest{Compare: cmps(withEnd(cmpVersion("c", res, 1), "a"))}) // end before key
	}
	// Several compares: all must hold.
	r.ok(&pb.TxnRequest{Compare: cmps(cmpVersion("a", pb.Compare_EQUAL, 1), cmpValue("c", pb.Compare_EQUAL, "3"))})
	r.ok(&pb.TxnRequest{Compare: cmps(cmpVersion("a", pb.Compare_EQUAL, 1), cmpValue("c", pb.Compare_EQUAL, "4"))})
}

func scenarioRangeOptions(r *runner) {
	vals := []string{"m", "z", "a", "m", "q", "b", "z"}
	for i, k := range []string{"k1", "k2", "k3", "k4", "k5", "k6", "k7"} {
		r.ok(put(k, vals[i]))
	}
	r.ok(put("k3", "c")) // k3 version 2
	r.ok(put("k5", "y"))
	r.ok(put("k5", "x")) // k5 version 3
	for order := range int32(3) {
		for target := range int32(5) {
			for _, limit := range []int64{0, 2, -1} {
				res := r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), SortOrder: pb.RangeRequest_SortOrder(order), SortTarget: pb.RangeRequest_SortTarget(target), Limit: limit})
				if limit == 2 {
					rr := res.resp.(*pb.RangeResponse)
					r.claim(rr.Count == 7 && rr.More && len(rr.Kvs) == 2, "count is computed before the limit", res)
				}
			}
		}
	}
	// Count comes before the revision filters; keys_only and count_only.
	r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), MinModRevision: 5})
	r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), MaxModRevision: 5, Limit: 1})
	r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), MinCreateRevision: 3, MaxCreateRevision: 5})
	r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), MinModRevision: 9, MaxModRevision: 3})
	r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), MinModRevision: 3, Limit: 2, SortOrder: pb.RangeRequest_DESCEND})
	r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), MaxCreateRevision: 4, CountOnly: true})
	r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), KeysOnly: true, SortTarget: pb.RangeRequest_VALUE})
	res := r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), CountOnly: true, Limit: 2})
	r.claim(!res.resp.(*pb.RangeResponse).More, "count_only with a limit reports more=false", res)
	r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), CountOnly: true, KeysOnly: true})
	r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Limit: 7})
	r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Limit: 6})
	r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Limit: 8})
	r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Limit: 3, Revision: 5, SortTarget: pb.RangeRequest_MOD, SortOrder: pb.RangeRequest_DESCEND})
	r.ok(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Limit: 3, Serializable: true})
	r.expect(&pb.RangeRequest{Key: []byte("k"), SortOrder: 3}, codes.InvalidArgument, errSortOption)
	r.expect(&pb.RangeRequest{Key: []byte("k"), SortTarget: 5}, codes.InvalidArgument, errSortOption)
	r.expect(&pb.RangeRequest{SortTarget: 5}, codes.InvalidArgument, errEmptyKey)
	// Thirteen keys with equal versions: sorting by version is not an
	// insertion sort any more.
	for i := range 13 {
		r.ok(put("s"+string(rune('a'+i)), "v"))
	}
	for order := range int32(3) {
		r.ok(&pb.RangeRequest{Key: []byte("s"), RangeEnd: []byte("t"), SortTarget: pb.RangeRequest_VERSION, SortOrder: pb.RangeRequest_SortOrder(order)})
		r.ok(&pb.RangeRequest{Key: []byte("s"), RangeEnd: []byte("t"), SortTarget: pb.RangeRequest_VALUE, SortOrder: pb.RangeRequest_SortOrder(order), Limit: 5})
	}
	r.ok(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, SortTarget: pb.RangeRequest_CREATE, SortOrder: pb.RangeRequest_DESCEND})
}

func scenarioRangeEnds(r *runner) {
	for _, k := range []string{"\x01", "a", "a/b", "a/c", "ab", "b", "\xff", "\xff\xff", "\xff\x00"} {
		r.ok(put(k, "v"))
	}
	cases := [][2]string{
		{"a", ""}, {"a", "\x00"}, {"\x00", "\x00"}, {"\x00", ""}, {"a", "b"}, {"a/", "a0"},
		{"b", "a"}, {"a", "a"}, {"a", "a\x00"}, {"\xff", "\x00"}, {"\xff", ""}, {"\x01", "\xff"},
		{"\xff\xff", "\x00"}, {"\x00", "a"}, {"zzz", "\x00"},
	}
	for _, c := range cases {
		r.ok(getRange(c[0], c[1]))
		r.ok(&pb.RangeRequest{Key: []byte(c[0]), RangeEnd: []byte(c[1]), CountOnly: true})
	}
	// Deletes with the same ends, each on a fresh copy of the keys.
	for _, c := range cases {
		r.ok(&pb.DeleteRangeRequest{Key: []byte(c[0]), RangeEnd: []byte(c[1]), PrevKv: true})
		r.ok(&pb.TxnRequest{Success: ops(
			opPut(put("\x01", "v")), opPut(put("a", "v")), opPut(put("a/b", "v")), opPut(put("ab", "v")),
			opPut(put("b", "v")), opPut(put("\xff", "v")), opPut(put("\xff\xff", "v")), opPut(put("\xff\x00", "v")),
		)})
	}
	r.ok(allKeys())
}

func scenarioRevisionBounds(r *runner) {
	r.ok(put("a", "1"))
	r.ok(put("a", "2"))
	res := r.ok(getAt("a", -1))
	r.claim(len(res.resp.(*pb.RangeResponse).Kvs) == 1, "a negative revision means current in a plain Range", res)
	r.ok(getAt("a", -100))
	// Inside a Txn a negative revision is checked against the compacted
	// revision, which is -1 on a store never compacted: -1 reads the
	// current revision, anything lower is compacted.
	r.ok(&pb.TxnRequest{Success: ops(opGet(getAt("a", -1)))})
	r.ok(&pb.TxnRequest{Success: ops(opPut(put("b", "1")), opGet(getAt("a", -1)))})
	r.expect(&pb.TxnRequest{Success: ops(opGet(getAt("a", -2)))}, codes.OutOfRange, errCompacted)
	r.expect(&pb.TxnRequest{Success: ops(opPut(put("b", "1")), opGet(getAt("a", -2)))}, codes.OutOfRange, errCompacted)
	r.step(&pb.TxnRequest{Compare: cmps(cmpVersion("a", pb.Compare_EQUAL, 0)), Success: ops(opPut(put("b", "1"))), Failure: ops(opGet(getAt("a", -5)))})
	r.ok(&pb.CompactionRequest{Revision: 2})
	r.ok(getAt("a", -1))
	r.expect(&pb.TxnRequest{Success: ops(opGet(getAt("a", -1)))}, codes.OutOfRange, errCompacted)
	r.expect(&pb.TxnRequest{Success: ops(opGet(getAt("a", 1)))}, codes.OutOfRange, errCompacted)
	r.ok(&pb.TxnRequest{Success: ops(opGet(getAt("a", 2)))})
	cur := rev(r.ok(getAt("a", 3)))
	r.expect(getAt("a", 1), codes.OutOfRange, errCompacted)
	r.expect(getAt("a", cur+1), codes.OutOfRange, errFutureRev)
	r.expect(&pb.RangeRequest{Key: []byte("a"), Revision: cur + 1, Serializable: true}, codes.OutOfRange, errFutureRev)
	r.expect(&pb.RangeRequest{Key: []byte("a"), Revision: 1 << 62, CountOnly: true}, codes.OutOfRange, errFutureRev)
	r.expect(&pb.CompactionRequest{Revision: cur + 1}, codes.OutOfRange, errFutureRev)
}

func scenarioCompaction(r *runner) {
	for i := range 6 {
		r.ok(put("k", string(rune('0'+i))))
		r.ok(put("j"+string(rune('0'+i)), "x"))
	}
	r.ok(&pb.CompactionRequest{Revision: 0})
	r.ok(&pb.CompactionRequest{Revision: 4})
	r.ok(getAt("k", 4))
	r.ok(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: 4})
	r.expect(getAt("k", 3), codes.OutOfRange, errCompacted)
	r.expect(&pb.RangeRequest{Key: []byte("k"), Revision: 3, Serializable: true, CountOnly: true}, codes.OutOfRange, errCompacted)
	r.expect(&pb.CompactionRequest{Revision: 4}, codes.OutOfRange, errCompacted)
	r.expect(&pb.CompactionRequest{Revision: 3, Physical: true}, codes.OutOfRange, errCompacted)
	r.expect(&pb.CompactionRequest{Revision: 0}, codes.OutOfRange, errCompacted) // only a fresh store compacts at 0
	r.ok(&pb.CompactionRequest{Revision: 8, Physical: true})
	r.ok(getAt("k", 8))
	r.ok(&pb.TxnRequest{Success: ops(opGet(getAt("k", 8)), opGet(getAt("j", 9)))})
	r.expect(&pb.TxnRequest{Success: ops(opGet(getAt("k", 7)))}, codes.OutOfRange, errCompacted)
	cur := rev(r.ok(get("k")))
	r.expect(&pb.CompactionRequest{Revision: cur + 1}, codes.OutOfRange, errFutureRev)
	r.ok(&pb.CompactionRequest{Revision: cur})
	r.ok(getAt("k", cur))
	r.ok(allKeys())
	r.step(&pb.CompactionRequest{Revision: 0, Physical: true})
	// Keys deleted before the compaction are gone from history, and keys
	// written after it start a new history.
	r.ok(del("j0", "j9"))
	r.ok(put("k", "after"))
	r.ok(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: cur})
	r.ok(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: cur + 1})
	r.ok(&pb.CompactionRequest{Revision: cur + 1, Physical: true})
	r.ok(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: cur + 1})
	r.expect(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: cur}, codes.OutOfRange, errCompacted)
}

func scenarioFailedTxnAtomic(r *runner) {
	for i := range 4 {
		r.ok(put("k", string(rune('0'+i))))
	}
	r.ok(&pb.CompactionRequest{Revision: 3})
	before := rev(r.ok(allKeys()))
	r.expect(&pb.TxnRequest{Success: ops(opPut(put("new", "1")), opDel(del("k", "")), opGet(getAt("k", 2)))}, codes.OutOfRange, errCompacted)
	res := r.ok(allKeys())
	r.claim(rev(res) == before && len(res.resp.(*pb.RangeResponse).Kvs) == 1, "a failed Txn changes nothing", res)
	r.expect(&pb.TxnRequest{Success: ops(opPut(put("new", "1")), opPut(&pb.PutRequest{Key: []byte("missing"), IgnoreValue: true}))}, codes.InvalidArgument, errKeyNotFound)
	r.expect(&pb.TxnRequest{Success: ops(opPut(put("new", "1")), opPut(&pb.PutRequest{Key: []byte("k"), Lease: 0xbad}))}, codes.NotFound, errNoLease)
	res = r.ok(allKeys())
	r.claim(rev(res) == before, "a failed Txn changes nothing", res)
}

func scenarioSizeLimits(r *runner) {
	const mib = 1 << 20
	r.ok(&pb.PutRequest{Key: []byte("big"), Value: bytes.Repeat([]byte("x"), 14*mib/10)})
	r.expect(&pb.PutRequest{Key: []byte("big"), Value: bytes.Repeat([]byte("x"), 16*mib/10)}, codes.InvalidArgument, errTooLarge)
	// Beyond the request limit plus gRPC's allowance: gRPC itself refuses.
	r.step(&pb.PutRequest{Key: []byte("big"), Value: bytes.Repeat([]byte("x"), 21*mib/10)})
	// The limit is on the whole request, not one value.
	half := bytes.Repeat([]byte("y"), 8*mib/10)
	r.expect(&pb.TxnRequest{Success: ops(opPut(&pb.PutRequest{Key: []byte("h1"), Value: half}), opPut(&pb.PutRequest{Key: []byte("h2"), Value: half}))}, codes.InvalidArgument, errTooLarge)
	r.ok(&pb.RangeRequest{Key: []byte("big"), KeysOnly: true})
}

func scenarioLeases(r *runner) {
	if !r.leasesSupported() {
		r.t.Skip("the server under test does not serve leases yet")
	}
	r.ok(&pb.LeaseGrantRequest{ID: 1, TTL: longTTL})
	r.ok(&pb.LeaseGrantRequest{ID: -2, TTL: longTTL}) // negative ids are accepted
	for i, ttl := range []int64{0, -5, 1, 2} {
		res := r.ok(&pb.LeaseGrantRequest{ID: int64(10 + i), TTL: ttl})
		r.claim(res.resp.(*pb.LeaseGrantResponse).TTL == 2, "TTLs below 2s are raised to 2s", res)
		r.ok(&pb.LeaseRevokeRequest{ID: int64(10 + i)})
	}
	r.expect(&pb.LeaseGrantRequest{ID: 1, TTL: longTTL}, codes.FailedPrecondition, "etcdserver: lease already exists")
	r.expect(&pb.LeaseGrantRequest{ID: 3, TTL: 9_000_000_001}, codes.OutOfRange, "etcdserver: too large lease TTL")
	r.ok(&pb.LeaseGrantRequest{ID: 3, TTL: 9_000_000_000})
	res := r.ok(&pb.LeaseTimeToLiveRequest{ID: 0xbad, Keys: true})
	r.claim(res.resp.(*pb.LeaseTimeToLiveResponse).TTL == -1, "TimeToLive of an unknown lease is TTL -1 without error", res)
	r.expect(&pb.LeaseRevokeRequest{ID: 0xbad}, codes.NotFound, errNoLease)
	// Attach, detach, keep.
	for _, k := range []string{"c", "a", "b", "d"} {
		r.ok(&pb.PutRequest{Key: []byte(k), Value: []byte("v"), Lease: 1})
	}
	r.ok(&pb.PutRequest{Key: []byte("d"), Value: []byte("detached")})
	r.ok(&pb.PutRequest{Key: []byte("c"), Value: []byte("kept"), IgnoreLease: true})
	r.ok(&pb.PutRequest{Key: []byte("e"), Value: []byte("on -2"), Lease: -2})
	r.ok(&pb.PutRequest{Key: []byte("e"), IgnoreValue: true, Lease: 1})
	r.ok(&pb.LeaseTimeToLiveRequest{ID: 1, Keys: true})
	r.ok(&pb.LeaseTimeToLiveRequest{ID: -2, Keys: true})
	r.ok(&pb.LeaseTimeToLiveRequest{ID: 1})
	r.ok(&pb.LeaseLeasesRequest{})
	r.ok(&pb.TxnRequest{Compare: cmps(cmpLease("a", pb.Compare_EQUAL, 1), withEnd(cmpLease("a", pb.Compare_EQUAL, 1), "c"))})
	r.ok(&pb.TxnRequest{Success: ops(opPut(&pb.PutRequest{Key: []byte("f"), Lease: 1}), opPut(&pb.PutRequest{Key: []byte("a"), IgnoreValue: true, IgnoreLease: true}))})
	r.expect(&pb.PutRequest{Key: []byte("missing"), IgnoreValue: true}, codes.InvalidArgument, errKeyNotFound)
	r.expect(&pb.PutRequest{Key: []byte("a"), Lease: 0xbad}, codes.NotFound, errNoLease)
	// Revoke deletes every attached key in one revision.
	before := rev(r.ok(allKeys()))
	r.ok(&pb.LeaseRevokeRequest{ID: 1})
	res = r.ok(allKeys())
	r.claim(rev(res) == before+1, "revoke deletes all attached keys in one revision", res)
	r.ok(&pb.LeaseRevokeRequest{ID: 3})
	res = r.ok(allKeys())
	r.claim(rev(res) == before+1, "revoking a lease without keys creates no revision", res)
	r.ok(&pb.LeaseLeasesRequest{})
	r.compareWatchHistory(1, rev(res))
	r.compareKeepAlive([]int64{-2, 0xbad, 1})
}

func scenarioWatch(r *runner) {
	w := r.openWatch()
	if w == nil {
		r.t.Skip("the server under test does not serve Watch yet")
	}
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("c"), PrevKv: true}}})
	w.recv(1)
	r.ok(put("a", "1"))
	r.ok(put("b", "1"))
	r.ok(&pb.TxnRequest{Success: ops(opPut(put("a", "2")), opPut(put("bz", "2")), opPut(put("z", "x")))})
	r.ok(&pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("c")})
	w.recvEvents(7)
	// Progress requests are answered with watch id -1 and the current revision.
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
	w.recv(1)
	// Bad creates: one response, created and canceled, watch id -1.
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")}}})
	w.recv(1)
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("b"), StartRevision: -1}}})
	w.recv(1)
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("b"), WatchId: 7}}})
	w.recv(1)
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("b"), WatchId: 7}}})
	w.recv(1)
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 7}}})
	w.recv(1)
	// Compaction: watching from exactly the compacted revision works; from
	// below it is canceled with the compact revision.
	cur := rev(r.ok(get("a")))
	r.ok(&pb.CompactionRequest{Revision: cur - 2})
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRevision: cur - 3}}})
	w.recv(2) // created, then canceled with the compact revision
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRevision: cur - 2, PrevKv: true}}})
	w.recv(1)
	w.recvEvents(6)
}

// TestEtcdPanicCase sends the server under test the Txn that makes etcd
// panic (3.6.6, and 3.7.3 has the same duplicate-key check): a put with
// ignore_value of a key deleted earlier in the same Txn by a delete to the
// end. It must answer, and keep serving.
func TestEtcdPanicCase(t *testing.T) {
	if *selfCheck {
		t.Skip("etcd panics on this request")
	}
	sut := newTarget("meshkv", startMeshkv(t))
	ctx := t.Context()
	if res := do(ctx, sut, put("b", "1")); res.resp == nil {
		t.Fatalf("put: %s", res)
	}
	res := do(ctx, sut, &pb.TxnRequest{Success: ops(opDel(del("a", "\x00")), opPut(&pb.PutRequest{Key: []byte("b"), IgnoreValue: true}))})
	t.Logf("meshkv answers %s", res)
	after := do(ctx, sut, allKeys())
	if after.resp == nil {
		t.Fatalf("meshkv stopped serving after the Txn: %s", after)
	}
	t.Logf("and then holds %s", after)
}
