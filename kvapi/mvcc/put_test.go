package mvcc

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestNewStore(t *testing.T) {
	s := New()
	wantRev(t, s, 1)
	if got := s.CompactRev(); got != 0 {
		t.Fatalf("CompactRev() = %d, want 0", got)
	}
	resp := mustRange(t, s, rng("\x00", "\x00"))
	if resp.Count != 0 || len(resp.Kvs) != 0 || resp.Header.Revision != 1 {
		t.Fatalf("empty store range = %v", resp)
	}
}

func TestCheckPut(t *testing.T) {
	tests := []struct {
		name string
		req  *pb.PutRequest
		want error
	}{
		{"ok", putReq("a", "1"), nil},
		{"nil", nil, ErrNilRequest},
		{"empty key", putReq("", "1"), ErrEmptyKey},
		{"ignore value with value", &pb.PutRequest{Key: []byte("a"), Value: []byte("1"), IgnoreValue: true}, ErrValueProvided},
		{"ignore value without value", &pb.PutRequest{Key: []byte("a"), IgnoreValue: true}, nil},
		{"ignore lease with lease", &pb.PutRequest{Key: []byte("a"), Lease: 5, IgnoreLease: true}, ErrLeaseProvided},
		{"ignore lease without lease", &pb.PutRequest{Key: []byte("a"), IgnoreLease: true}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckPut(tc.req); err != tc.want {
				t.Fatalf("CheckPut = %v, want %v", err, tc.want)
			}
			s := New()
			if _, err := s.Put(tc.req); tc.want != nil && err != tc.want {
				t.Fatalf("Put = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestPut(t *testing.T) {
	type step struct {
		req     *pb.PutRequest
		err     error
		wantRev int64 // header revision (0 when err != nil)
		prev    *kv   // expected prev_kv (nil: none)
		after   *kv   // the key afterwards (nil: absent)
	}
	tests := []struct {
		name   string
		leases []int64
		steps  []step
	}{
		{
			name: "create then overwrite with same value",
			steps: []step{
				{req: putReq("a", "1"), wantRev: 2, after: &kv{"a", "1", 2, 2, 1, 0}},
				{req: putReq("a", "1"), wantRev: 3, after: &kv{"a", "1", 2, 3, 2, 0}},
				{req: putReq("a", "2"), wantRev: 4, after: &kv{"a", "2", 2, 4, 3, 0}},
			},
		},
		{
			name: "prev_kv",
			steps: []step{
				{req: putReq("a", "1", withPrevKV()), wantRev: 2, after: &kv{"a", "1", 2, 2, 1, 0}},
				{req: putReq("a", "2", withPrevKV()), wantRev: 3, prev: &kv{"a", "1", 2, 2, 1, 0}, after: &kv{"a", "2", 2, 3, 2, 0}},
			},
		},
		{
			name: "unknown lease",
			steps: []step{
				{req: putReq("a", "1", withLease(7)), err: ErrLeaseNotFound},
			},
		},
		{
			name:   "lease attach, plain put detaches",
			leases: []int64{7},
			steps: []step{
				{req: putReq("a", "1", withLease(7)), wantRev: 2, after: &kv{"a", "1", 2, 2, 1, 7}},
				{req: putReq("a", "2"), wantRev: 3, after: &kv{"a", "2", 2, 3, 2, 0}},
			},
		},
		{
			name:   "ignore_lease keeps the lease",
			leases: []int64{7},
			steps: []step{
				{req: putReq("a", "1", withLease(7)), wantRev: 2, after: &kv{"a", "1", 2, 2, 1, 7}},
				{req: putReq("a", "2", ignoreLease()), wantRev: 3, after: &kv{"a", "2", 2, 3, 2, 7}},
			},
		},
		{
			name:   "ignore_value keeps the value and bumps the version",
			leases: []int64{7},
			steps: []step{
				{req: putReq("a", "1"), wantRev: 2, after: &kv{"a", "1", 2, 2, 1, 0}},
				{req: putReq("a", "", ignoreValue(), withLease(7), withPrevKV()), wantRev: 3, prev: &kv{"a", "1", 2, 2, 1, 0}, after: &kv{"a", "1", 2, 3, 2, 7}},
			},
		},
		{
			name: "ignore_value on a missing key",
			steps: []step{
				{req: putReq("a", "", ignoreValue()), err: ErrKeyNotFound},
			},
		},
		{
			name: "ignore_lease on a missing key",
			steps: []step{
				{req: putReq("a", "1", ignoreLease()), err: ErrKeyNotFound},
			},
		},
		{
			name:   "unknown lease is checked before ignore_value",
			leases: nil,
			steps: []step{
				{req: putReq("a", "", ignoreValue(), withLease(9)), err: ErrLeaseNotFound},
			},
		},
		{
			name: "empty value",
			steps: []step{
				{req: putReq("a", ""), wantRev: 2, after: &kv{"a", "", 2, 2, 1, 0}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			for _, id := range tc.leases {
				if err := s.LeaseGrant(id, 10, 0); err != nil {
					t.Fatal(err)
				}
			}
			for i, st := range tc.steps {
				before := s.Rev()
				resp, err := s.Put(st.req)
				if st.err != nil {
					wantErr(t, err, st.err)
					wantRev(t, s, before)
					if got := getKV(t, s, string(st.req.Key), 0); got != nil && st.after == nil {
						t.Fatalf("step %d: key exists after failed put: %v", i, got)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if resp.Header.Revision != st.wantRev {
					t.Fatalf("step %d: header revision %d, want %d", i, resp.Header.Revision, st.wantRev)
				}
				wantRev(t, s, st.wantRev)
				if got := toKV(resp.PrevKv); (st.prev == nil) != (resp.PrevKv == nil) || (st.prev != nil && got != *st.prev) {
					t.Fatalf("step %d: prev_kv = %v, want %v", i, resp.PrevKv, st.prev)
				}
				got := getKV(t, s, string(st.req.Key), 0)
				if (got == nil) != (st.after == nil) || (got != nil && toKV(got) != *st.after) {
					t.Fatalf("step %d: key = %v, want %v", i, toKV(got), st.after)
				}
			}
			checkInvariants(t, s)
		})
	}
}

func TestPutLeaseAttachment(t *testing.T) {
	s := New()
	for _, id := range []int64{1, 2} {
		if err := s.LeaseGrant(id, 10, 0); err != nil {
			t.Fatal(err)
		}
	}
	keys := func(id int64) string {
		t.Helper()
		l, ok := s.Lease(id)
		if !ok {
			t.Fatalf("lease %d missing", id)
		}
		var out string
		for _, k := range l.Keys {
			out += string(k) + ","
		}
		return out
	}
	mustPut(t, s, "b", "1", withLease(1))
	mustPut(t, s, "a", "1", withLease(1))
	if got := keys(1); got != "a,b," {
		t.Fatalf("lease 1 keys = %q", got)
	}
	mustPut(t, s, "a", "2", withLease(2)) // moves a to lease 2
	if got, got2 := keys(1), keys(2); got != "b," || got2 != "a," {
		t.Fatalf("lease keys = %q, %q", got, got2)
	}
	mustPut(t, s, "a", "3", ignoreLease()) // stays on 2
	if got := keys(2); got != "a," {
		t.Fatalf("lease 2 keys = %q", got)
	}
	mustPut(t, s, "a", "4") // detaches
	if got := keys(2); got != "" {
		t.Fatalf("lease 2 keys = %q", got)
	}
	mustDel(t, s, "b", "") // delete detaches
	if got := keys(1); got != "" {
		t.Fatalf("lease 1 keys = %q", got)
	}
	mustPut(t, s, "b", "again") // recreated key has no lease
	if got := getKV(t, s, "b", 0); got.Lease != 0 || got.Version != 1 {
		t.Fatalf("recreated b = %v", toKV(got))
	}
	checkInvariants(t, s)
}

func TestDeleteRange(t *testing.T) {
	setup := func(t *testing.T) *Store {
		s := New()
		for _, k := range []string{"a", "b", "c", "d"} { // revisions 2..5
			mustPut(t, s, k, k+"v")
		}
		return s
	}
	tests := []struct {
		name     string
		req      *pb.DeleteRangeRequest
		deleted  int64
		wantRev  int64 // header revision and store revision afterwards
		prevKeys string
		left     string
	}{
		{"single", delReq("b", ""), 1, 6, "", "a,c,d"},
		{"missing key makes no revision", delReq("x", ""), 0, 5, "", "a,b,c,d"},
		{"range", delReq("b", "d"), 2, 6, "", "a,d"},
		{"empty range", delReq("bb", "bc"), 0, 5, "", "a,b,c,d"},
		{"from key", delReq("c", "\x00"), 2, 6, "", "a,b"},
		{"all", delReq("\x00", "\x00"), 4, 6, "", ""},
		{"prev_kv", &pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), PrevKv: true}, 2, 6, "a,b", "c,d"},
		{"end before key", delReq("c", "a"), 0, 5, "", "a,b,c,d"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := setup(t)
			resp, err := s.DeleteRange(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Deleted != tc.deleted || resp.Header.Revision != tc.wantRev {
				t.Fatalf("deleted %d at %d, want %d at %d", resp.Deleted, resp.Header.Revision, tc.deleted, tc.wantRev)
			}
			wantRev(t, s, tc.wantRev)
			if got := keysOf(resp.PrevKvs); got != tc.prevKeys {
				t.Fatalf("prev kvs %q, want %q", got, tc.prevKeys)
			}
			if got := keysOf(mustRange(t, s, rng("\x00", "\x00")).Kvs); got != tc.left {
				t.Fatalf("left %q, want %q", got, tc.left)
			}
			checkInvariants(t, s)
		})
	}
}

func TestDeleteThenRecreate(t *testing.T) {
	s := New()
	mustPut(t, s, "a", "1") // 2
	mustPut(t, s, "a", "2") // 3
	mustDel(t, s, "a", "")  // 4
	if got := getKV(t, s, "a", 0); got != nil {
		t.Fatalf("deleted key visible: %v", got)
	}
	mustPut(t, s, "a", "3") // 5
	if got := toKV(getKV(t, s, "a", 0)); got != (kv{"a", "3", 5, 5, 1, 0}) {
		t.Fatalf("recreated key = %v", got)
	}
	// History: each revision sees its own generation.
	for rev, want := range map[int64]*kv{
		1: nil,
		2: {"a", "1", 2, 2, 1, 0},
		3: {"a", "2", 2, 3, 2, 0},
		4: nil,
		5: {"a", "3", 5, 5, 1, 0},
	} {
		got := getKV(t, s, "a", rev)
		if (got == nil) != (want == nil) || (got != nil && toKV(got) != *want) {
			t.Fatalf("at %d: %v, want %v", rev, got, want)
		}
	}
	checkInvariants(t, s)
}

func TestStaticChecksDeleteRange(t *testing.T) {
	if err := CheckDeleteRange(&pb.DeleteRangeRequest{}); err != ErrEmptyKey {
		t.Fatalf("CheckDeleteRange(empty) = %v", err)
	}
	if err := CheckDeleteRange(nil); err != ErrNilRequest {
		t.Fatalf("CheckDeleteRange(nil) = %v", err)
	}
	s := New()
	if _, err := s.DeleteRange(&pb.DeleteRangeRequest{}); err != ErrEmptyKey {
		t.Fatalf("DeleteRange(empty) = %v", err)
	}
}
