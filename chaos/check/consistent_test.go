package check

import "testing"

func TestConsistent(t *testing.T) {
	agree := []MemberHash{{Member: "n1", Revision: 9, Hash: 0xab, CompactRev: 3}, {Member: "n2", Revision: 9, Hash: 0xab, CompactRev: 3}, {Member: "n3", Revision: 9, Hash: 0xab, CompactRev: 3}}
	if r := Consistent(agree); r.Status != Pass {
		t.Fatalf("agreeing members: %+v", r)
	}
	diverged := append([]MemberHash(nil), agree...)
	diverged[2].Hash = 0xcd
	if r := Consistent(diverged); r.Status != Fail || len(r.Violations) != 1 {
		t.Fatalf("a diverged member: %+v, want one violation", r)
	}
	compacted := append([]MemberHash(nil), agree...)
	compacted[1].CompactRev = 5
	if r := Consistent(compacted); r.Status != Fail {
		t.Fatalf("different compact revisions: %+v, want a failure", r)
	}
	revs := append([]MemberHash(nil), agree...)
	revs[0].Revision = 8
	if r := Consistent(revs); r.Status != Fail {
		t.Fatalf("different revisions: %+v, want a failure", r)
	}
	partial := append([]MemberHash(nil), agree...)
	partial[1] = MemberHash{Member: "n2", Err: "unavailable"}
	if r := Consistent(partial); r.Status != Inconclusive {
		t.Fatalf("a member that did not answer: %+v, want inconclusive", r)
	}
	if r := Consistent(agree[:1]); r.Status != Inconclusive {
		t.Fatalf("one member: %+v, want inconclusive", r)
	}
}
