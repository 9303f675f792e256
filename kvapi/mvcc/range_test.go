package mvcc

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// rangeFixture builds this history:
//
//	rev 2 put a=3    rev 6 put d=5
//	rev 3 put b=1    rev 7 put b=4
//	rev 4 put c=2    rev 8 put b=0
//	rev 5 put a=1    rev 9 delete c
//	                 rev 10 put e=2
//
// Now: a=1 (c2 m5 v2), b=0 (c3 m8 v3), d=5 (c6 m6 v1), e=2 (c10 m10 v1).
func rangeFixture(t *testing.T) *Store {
	t.Helper()
	s := New()
	for _, p := range [][2]string{{"a", "3"}, {"b", "1"}, {"c", "2"}, {"a", "1"}, {"d", "5"}, {"b", "4"}, {"b", "0"}} {
		mustPut(t, s, p[0], p[1])
	}
	mustDel(t, s, "c", "")
	mustPut(t, s, "e", "2")
	wantRev(t, s, 10)
	return s
}

func TestRange(t *testing.T) {
	all := func(mod func(r *pb.RangeRequest)) *pb.RangeRequest {
		r := rng("\x00", "\x00")
		mod(r)
		return r
	}
	tests := []struct {
		name  string
		req   *pb.RangeRequest
		keys  string // keys of the result in order
		count int64
		more  bool
	}{
		{"single key", rng("a", ""), "a", 1, false},
		{"missing key", rng("zz", ""), "", 0, false},
		{"deleted key", rng("c", ""), "", 0, false},
		{"range", rng("b", "e"), "b,d", 2, false},
		{"range end before key", rng("e", "b"), "", 0, false},
		{"prefix-like range", rng("a", "b"), "a", 1, false},
		{"from key", rng("b", "\x00"), "b,d,e", 3, false},
		{"all keys", rng("\x00", "\x00"), "a,b,d,e", 4, false},
		{"limit", all(func(r *pb.RangeRequest) { r.Limit = 2 }), "a,b", 4, true},
		{"limit equal to count", all(func(r *pb.RangeRequest) { r.Limit = 4 }), "a,b,d,e", 4, false},
		{"limit above count", all(func(r *pb.RangeRequest) { r.Limit = 10 }), "a,b,d,e", 4, false},
		{"negative limit is no limit", all(func(r *pb.RangeRequest) { r.Limit = -1 }), "a,b,d,e", 4, false},
		{"count only", all(func(r *pb.RangeRequest) { r.CountOnly = true }), "", 4, false},
		{"count only with limit reports no more", all(func(r *pb.RangeRequest) { r.CountOnly = true; r.Limit = 1 }), "", 4, false},
		{"keys only", all(func(r *pb.RangeRequest) { r.KeysOnly = true }), "a,b,d,e", 4, false},

		{"sort key ascend", all(func(r *pb.RangeRequest) { r.SortOrder = pb.RangeRequest_ASCEND }), "a,b,d,e", 4, false},
		{"sort key descend", all(func(r *pb.RangeRequest) { r.SortOrder = pb.RangeRequest_DESCEND }), "e,d,b,a", 4, false},
		{"sort value ascend", all(func(r *pb.RangeRequest) {
			r.SortOrder, r.SortTarget = pb.RangeRequest_ASCEND, pb.RangeRequest_VALUE
		}), "b,a,e,d", 4, false},
		{"sort value descend", all(func(r *pb.RangeRequest) {
			r.SortOrder, r.SortTarget = pb.RangeRequest_DESCEND, pb.RangeRequest_VALUE
		}), "d,e,a,b", 4, false},
		{"sort value with order none sorts ascending", all(func(r *pb.RangeRequest) {
			r.SortTarget = pb.RangeRequest_VALUE
		}), "b,a,e,d", 4, false},
		{"sort version ascend", all(func(r *pb.RangeRequest) {
			r.SortOrder, r.SortTarget = pb.RangeRequest_ASCEND, pb.RangeRequest_VERSION
		}), "d,e,a,b", 4, false},
		{"sort version descend", all(func(r *pb.RangeRequest) {
			r.SortOrder, r.SortTarget = pb.RangeRequest_DESCEND, pb.RangeRequest_VERSION
		}), "b,a,d,e", 4, false}, // d and e tie; etcd's sort keeps them in key order here
		{"sort create ascend", all(func(r *pb.RangeRequest) {
			r.SortOrder, r.SortTarget = pb.RangeRequest_ASCEND, pb.RangeRequest_CREATE
		}), "a,b,d,e", 4, false},
		{"sort create descend", all(func(r *pb.RangeRequest) {
			r.SortOrder, r.SortTarget = pb.RangeRequest_DESCEND, pb.RangeRequest_CREATE
		}), "e,d,b,a", 4, false},
		{"sort mod ascend", all(func(r *pb.RangeRequest) {
			r.SortOrder, r.SortTarget = pb.RangeRequest_ASCEND, pb.RangeRequest_MOD
		}), "a,d,b,e", 4, false},
		{"sort mod descend", all(func(r *pb.RangeRequest) {
			r.SortOrder, r.SortTarget = pb.RangeRequest_DESCEND, pb.RangeRequest_MOD
		}), "e,b,d,a", 4, false},
		{"sort mod with order none sorts ascending", all(func(r *pb.RangeRequest) {
			r.SortTarget = pb.RangeRequest_MOD
		}), "a,d,b,e", 4, false},
		{"sort happens before limit", all(func(r *pb.RangeRequest) {
			r.SortOrder, r.Limit = pb.RangeRequest_DESCEND, 2
		}), "e,d", 4, true},
		{"sort by value before limit", all(func(r *pb.RangeRequest) {
			r.SortOrder, r.SortTarget, r.Limit = pb.RangeRequest_DESCEND, pb.RangeRequest_VALUE, 1
		}), "d", 4, true},

		{"min mod revision", all(func(r *pb.RangeRequest) { r.MinModRevision = 6 }), "b,d,e", 4, false},
		{"max mod revision", all(func(r *pb.RangeRequest) { r.MaxModRevision = 6 }), "a,d", 4, false},
		{"min create revision", all(func(r *pb.RangeRequest) { r.MinCreateRevision = 3 }), "b,d,e", 4, false},
		{"max create revision", all(func(r *pb.RangeRequest) { r.MaxCreateRevision = 3 }), "a,b", 4, false},
		{"mod window", all(func(r *pb.RangeRequest) { r.MinModRevision, r.MaxModRevision = 6, 8 }), "b,d", 4, false},
		{"count before filters and limit", all(func(r *pb.RangeRequest) { r.MinModRevision, r.Limit = 6, 1 }), "b", 4, true},
		{"filter then limit exactly", all(func(r *pb.RangeRequest) { r.MinModRevision, r.Limit = 6, 3 }), "b,d,e", 4, false},

		{"historical single key", &pb.RangeRequest{Key: []byte("a"), Revision: 4}, "a", 1, false},
		{"historical deleted key visible", &pb.RangeRequest{Key: []byte("c"), Revision: 8}, "c", 1, false},
		{"historical range", &pb.RangeRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00"), Revision: 4}, "a,b,c", 3, false},
		{"historical before creation", &pb.RangeRequest{Key: []byte("e"), Revision: 9}, "", 0, false},
		{"revision 1 is empty", &pb.RangeRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00"), Revision: 1}, "", 0, false},
		{"negative revision is current", &pb.RangeRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00"), Revision: -3}, "a,b,d,e", 4, false},
		{"historical sort by mod", &pb.RangeRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00"), Revision: 7,
			SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_MOD}, "b,d,a,c", 4, false},
	}
	s := rangeFixture(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := mustRange(t, s, tc.req)
			if got := keysOf(resp.Kvs); got != tc.keys {
				t.Errorf("keys = %q, want %q", got, tc.keys)
			}
			if resp.Count != tc.count {
				t.Errorf("count = %d, want %d", resp.Count, tc.count)
			}
			if resp.More != tc.more {
				t.Errorf("more = %v, want %v", resp.More, tc.more)
			}
			if resp.Header.Revision != 10 {
				t.Errorf("header revision = %d, want 10", resp.Header.Revision)
			}
			for _, x := range resp.Kvs {
				if tc.req.KeysOnly && x.Value != nil {
					t.Errorf("keys_only returned value for %q", x.Key)
				}
			}
		})
	}
}

// A keys-only range drops the lease too, unless it sorts by value (etcd 3.7
// serves it from its key index then).
func TestRangeKeysOnlyLease(t *testing.T) {
	s := New()
	if err := s.LeaseGrant(7, 60, 0); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "a", "1", withLease(7))
	for _, tc := range []struct {
		target pb.RangeRequest_SortTarget
		lease  int64
	}{
		{pb.RangeRequest_KEY, 0},
		{pb.RangeRequest_VERSION, 0},
		{pb.RangeRequest_CREATE, 0},
		{pb.RangeRequest_MOD, 0},
		{pb.RangeRequest_VALUE, 7},
	} {
		r := rng("a", "")
		r.KeysOnly, r.SortTarget = true, tc.target
		resp := mustRange(t, s, r)
		if len(resp.Kvs) != 1 || resp.Kvs[0].Value != nil || resp.Kvs[0].Lease != tc.lease || resp.Kvs[0].Version != 1 {
			t.Errorf("sort by %v: kvs %v, want key a, version 1, no value, lease %d", tc.target, resp.Kvs, tc.lease)
		}
	}
	if resp := mustRange(t, s, rng("a", "")); resp.Kvs[0].Lease != 7 {
		t.Errorf("full range: lease %d, want 7", resp.Kvs[0].Lease)
	}
}

func TestRangeValues(t *testing.T) {
	s := rangeFixture(t)
	got := toKVs(mustRange(t, s, rng("\x00", "\x00")).Kvs)
	want := []kv{{"a", "1", 2, 5, 2, 0}, {"b", "0", 3, 8, 3, 0}, {"d", "5", 6, 6, 1, 0}, {"e", "2", 10, 10, 1, 0}}
	if kvsString(got) != kvsString(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	// Historical reads return the versions of that time.
	hist := map[int64]string{
		2:  "a=3(c2,m2,v1,l0)",
		4:  "a=3(c2,m2,v1,l0) b=1(c3,m3,v1,l0) c=2(c4,m4,v1,l0)",
		7:  "a=1(c2,m5,v2,l0) b=4(c3,m7,v2,l0) c=2(c4,m4,v1,l0) d=5(c6,m6,v1,l0)",
		9:  "a=1(c2,m5,v2,l0) b=0(c3,m8,v3,l0) d=5(c6,m6,v1,l0)",
		10: kvsString(want),
	}
	for rev, want := range hist {
		resp := mustRange(t, s, &pb.RangeRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00"), Revision: rev})
		if got := kvsString(toKVs(resp.Kvs)); got != want {
			t.Errorf("at %d: %s\nwant %s", rev, got, want)
		}
	}
}

func TestRangeErrors(t *testing.T) {
	s := rangeFixture(t)
	mustCompact(t, s, 5)
	tests := []struct {
		name string
		req  *pb.RangeRequest
		want error
	}{
		{"nil", nil, ErrNilRequest},
		{"empty key", &pb.RangeRequest{}, ErrEmptyKey},
		{"bad sort order", &pb.RangeRequest{Key: []byte("a"), SortOrder: 7}, ErrInvalidSortOption},
		{"bad sort target", &pb.RangeRequest{Key: []byte("a"), SortTarget: 9}, ErrInvalidSortOption},
		{"future revision", &pb.RangeRequest{Key: []byte("a"), Revision: 11}, ErrFutureRev},
		{"compacted revision", &pb.RangeRequest{Key: []byte("a"), Revision: 4}, ErrCompacted},
		{"exactly the compact revision", &pb.RangeRequest{Key: []byte("a"), Revision: 5}, nil},
		{"current revision", &pb.RangeRequest{Key: []byte("a"), Revision: 10}, nil},
		{"negative revision after compaction", &pb.RangeRequest{Key: []byte("a"), Revision: -1}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.req != nil && tc.want != ErrFutureRev && tc.want != ErrCompacted {
				if err := CheckRange(tc.req); err != tc.want {
					t.Fatalf("CheckRange = %v, want %v", err, tc.want)
				}
			}
			_, err := s.Range(tc.req)
			if err != tc.want {
				t.Fatalf("Range = %v, want %v", err, tc.want)
			}
		})
	}
}

// Ties in a sort come out as etcd's (unstable) sort.Sort leaves them, which is
// deterministic for a given input; check it is the same on every call and
// after a restore.
func TestRangeSortTiesDeterministic(t *testing.T) {
	s := New()
	for i := range 40 {
		mustPut(t, s, string(rune('A'+i)), "same")
	}
	req := &pb.RangeRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00"), SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_VALUE}
	first := keysOf(mustRange(t, s, req).Kvs)
	for range 3 {
		if got := keysOf(mustRange(t, s, req).Kvs); got != first {
			t.Fatalf("order changed: %s vs %s", got, first)
		}
	}
}
