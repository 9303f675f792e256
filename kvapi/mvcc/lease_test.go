package mvcc

import (
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

func TestLeaseGrant(t *testing.T) {
	tests := []struct {
		name string
		id   int64
		ttl  int64
		want error
	}{
		{"ok", 1, 10, nil},
		{"negative id", -5, 10, nil},
		{"zero ttl stored as given", 2, 0, nil},
		{"negative ttl stored as given", 3, -7, nil},
		{"max ttl", 4, MaxLeaseTTL, nil},
		{"ttl too large", 5, MaxLeaseTTL + 1, ErrLeaseTTLTooLarge},
		{"id 0", 0, 10, ErrLeaseNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			err := s.LeaseGrant(tc.id, tc.ttl, 0)
			wantErr(t, err, tc.want)
			if tc.want != nil {
				if len(s.Leases()) != 0 {
					t.Fatal("failed grant left a lease")
				}
				return
			}
			l, ok := s.Lease(tc.id)
			if !ok || l.ID != tc.id || l.TTL != tc.ttl || l.RemainingTTL != 0 || l.Keys != nil {
				t.Fatalf("Lease = %+v, %v", l, ok)
			}
			wantErr(t, s.LeaseGrant(tc.id, tc.ttl, 0), ErrLeaseExist)
			wantRev(t, s, 1)
		})
	}
}

func TestLeaseRevoke(t *testing.T) {
	s := New()
	for _, id := range []int64{1, 2} {
		if err := s.LeaseGrant(id, 30, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Attach in an order other than key order.
	for _, k := range []string{"m", "c", "x", "a"} {
		mustPut(t, s, k, "v", withLease(1)) // 2..5
	}
	mustPut(t, s, "other", "v", withLease(2)) // 6
	mustPut(t, s, "x", "v2")                  // 7: detached from 1
	var got []string
	s.SetObserver(func(rev int64, evs []mvccpb.Event) {
		for evi := range evs {
			ev := &evs[evi]
			got = append(got, fmt.Sprintf("%d%s%s%s", rev, ev.Type, ev.Kv.Key, ev.PrevKv.Value))
		}
	})
	resp, err := s.LeaseRevoke(1)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision != 8 {
		t.Fatalf("header revision %d, want 8", resp.Header.Revision)
	}
	wantRev(t, s, 8)
	if fmt.Sprint(got) != "[8DELETEav 8DELETEcv 8DELETEmv]" {
		t.Fatalf("events %v", got)
	}
	if got := keysOf(mustRange(t, s, rng("\x00", "\x00")).Kvs); got != "other,x" {
		t.Fatalf("keys left %q", got)
	}
	if _, ok := s.Lease(1); ok {
		t.Fatal("lease 1 still exists")
	}
	_, err = s.LeaseRevoke(1)
	wantErr(t, err, ErrLeaseNotFound)
	_, err = s.LeaseRevoke(99)
	wantErr(t, err, ErrLeaseNotFound)

	// A lease without keys: no revision.
	if err := s.LeaseGrant(3, 30, 0); err != nil {
		t.Fatal(err)
	}
	got = nil
	resp, err = s.LeaseRevoke(3)
	if err != nil || resp.Header.Revision != 8 || got != nil {
		t.Fatalf("revoke of empty lease: %v %v events %v", resp, err, got)
	}
	wantRev(t, s, 8)
	// The lease's keys can be put again without it.
	if _, err := s.Put(putReq("a", "new", withLease(1))); err != ErrLeaseNotFound {
		t.Fatalf("put with revoked lease = %v", err)
	}
	checkInvariants(t, s)
}

func TestLeaseCheckpointAndList(t *testing.T) {
	s := New()
	for _, id := range []int64{30, -2, 10} {
		if err := s.LeaseGrant(id, id*10, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.LeaseCheckpoint(10, 42); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.LeaseCheckpoint(11, 1), ErrLeaseNotFound)
	mustPut(t, s, "k2", "v", withLease(10))
	mustPut(t, s, "k1", "v", withLease(10))
	got := fmt.Sprint(s.Leases())
	if got != "[{-2 -20 0 0 0 []} {10 100 42 0 0 []} {30 300 0 0 0 []}]" {
		t.Fatalf("Leases() = %s", got)
	}
	l, _ := s.Lease(10)
	if l.RemainingTTL != 42 || len(l.Keys) != 2 || string(l.Keys[0]) != "k1" || string(l.Keys[1]) != "k2" {
		t.Fatalf("Lease(10) = %+v", l)
	}
	if err := s.LeaseCheckpoint(10, 7); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Lease(10); l.RemainingTTL != 7 {
		t.Fatalf("checkpoint not updated: %+v", l)
	}
	// A renewal restarts the countdown: the checkpoint is dropped and the
	// renewal's log index kept, beside the grant's.
	if err := s.LeaseGrant(50, 60, 12); err != nil {
		t.Fatal(err)
	}
	if err := s.LeaseCheckpoint(50, 30); err != nil {
		t.Fatal(err)
	}
	if err := s.LeaseRenew(50, 19); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Lease(50); l.RemainingTTL != 0 || l.GrantedAt != 12 || l.RenewedAt != 19 {
		t.Fatalf("after renewal: %+v, want no checkpoint, granted at 12, renewed at 19", l)
	}
	wantErr(t, s.LeaseRenew(51, 1), ErrLeaseNotFound)
	wantRev(t, s, 3) // grants and checkpoints make no revision
	checkInvariants(t, s)
}
