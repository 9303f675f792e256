package kvapi

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// The tests in this file run the lessor loop under testing/synctest: time
// is fake and advances only when every goroutine of the test is blocked, so
// deadlines are checked to the nanosecond without waiting.

// bubble is a Server without gRPC, driven by direct calls inside a synctest
// bubble.
type bubble struct {
	t       *testing.T
	store   *mvcc.Store
	sm      *StateMachine
	srv     *Server
	cluster *switchCluster
	ctx     context.Context
}

// newBubble starts a Server whose lessor runs until the test ends. Call it
// inside synctest.Test.
func newBubble(t *testing.T, lc LeaseConfig, follower bool) *bubble {
	t.Helper()
	store := mvcc.New()
	sm := NewStateMachine(store)
	return startBubble(t, store, sm, lc, follower)
}

func startBubble(t *testing.T, store *mvcc.Store, sm *StateMachine, lc LeaseConfig, follower bool) *bubble {
	t.Helper()
	cl := &switchCluster{}
	cl.follower.Store(follower)
	srv, err := NewServer(Config{}, store, &localReplicator{sm: sm}, cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetLeaseConfig(lc); err != nil {
		t.Fatal(err)
	}
	srv.UseStateMachine(sm)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &bubble{t: t, store: store, sm: sm, srv: srv, cluster: cl, ctx: ctx}
}

func (b *bubble) grant(id, ttl int64) {
	b.t.Helper()
	if _, err := (leaseServer{Server: b.srv}).LeaseGrant(b.ctx, &pb.LeaseGrantRequest{ID: id, TTL: ttl}); err != nil {
		b.t.Fatal(err)
	}
}

func (b *bubble) put(key string, lease int64) {
	b.t.Helper()
	if _, err := b.srv.propose(b.ctx, &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(key), Value: []byte("v"), Lease: lease}}); err != nil {
		b.t.Fatal(err)
	}
}

func (b *bubble) renew(id int64) {
	b.t.Helper()
	if ttl, err := b.srv.renew(b.ctx, id); err != nil || ttl <= 0 {
		b.t.Fatalf("renew %d: ttl %d, %v", id, ttl, err)
	}
}

// applyRaw proposes r as the lessor would, returning the apply error.
func (b *bubble) applyRaw(r *pb.InternalRaftRequest) error {
	b.t.Helper()
	_, err := b.srv.lessor.propose(b.ctx, r)
	return err
}

// basis is the lessor's current basis.
func (b *bubble) basis() uint64 {
	b.srv.lessor.mu.Lock()
	defer b.srv.lessor.mu.Unlock()
	return b.srv.lessor.lastIndex
}

// sleep advances the fake clock by d and lets everything settle.
func (b *bubble) sleep(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func (b *bubble) wantKey(key string, want bool, when string) {
	b.t.Helper()
	if got := leaseKeyExists(b.t, b.store, key); got != want {
		b.t.Fatalf("%s: key %q exists = %v, want %v", when, key, got, want)
	}
}

const testRevokeMargin = DefaultLeaseRevokeMargin

func TestLeaseExpiresAfterTTLNotBefore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, LeaseConfig{}, false)
		b.grant(1, 5)
		for _, k := range []string{"b", "a", "c"} {
			b.put(k, 1)
		}
		rev := b.store.Rev()
		b.sleep(5*time.Second + testRevokeMargin - time.Nanosecond)
		b.wantKey("a", true, "just before TTL + margin")
		b.sleep(time.Nanosecond)
		for _, k := range []string{"a", "b", "c"} {
			b.wantKey(k, false, "at TTL + margin")
		}
		if _, ok := b.store.Lease(1); ok {
			t.Fatal("lease 1 still exists")
		}
		if b.store.Rev() != rev+1 {
			t.Fatalf("revision %d, want one revoke revision %d", b.store.Rev(), rev+1)
		}
		var got []string
		revEvs := leaseRevisionEvents(t, b.store, rev+1)
		for evi := range revEvs {
			ev := &revEvs[evi]
			got = append(got, string(ev.Kv.Key))
		}
		if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
			t.Fatalf("expiry deleted %v, want [a b c] in key order", got)
		}
	})
}

func TestLeaseKeepAliveDefersExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, LeaseConfig{}, false)
		b.grant(1, 5)
		b.put("k", 1)
		b.sleep(4 * time.Second)
		b.renew(1) // new deadline: 9 s
		b.sleep(5*time.Second + testRevokeMargin - time.Nanosecond)
		b.wantKey("k", true, "before the renewed deadline")
		left, _, _ := b.srv.lessor.remaining(1)
		if left != -testRevokeMargin+time.Nanosecond {
			t.Fatalf("remaining = %v", left)
		}
		b.sleep(time.Nanosecond)
		b.wantKey("k", false, "at the renewed deadline + margin")
	})
}

func TestLeaseTimeToLiveCountsDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, LeaseConfig{}, false)
		b.grant(1, 10)
		b.sleep(3*time.Second + time.Millisecond)
		r, err := (leaseServer{Server: b.srv}).LeaseTimeToLive(b.ctx, &pb.LeaseTimeToLiveRequest{ID: 1})
		if err != nil || r.TTL != 6 || r.GrantedTTL != 10 {
			t.Fatalf("TimeToLive after 3.001 s = %v, %v; want TTL 6 (truncated), granted 10", r, err)
		}
	})
}

func TestLeaseFollowerNeverRevokes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, LeaseConfig{}, true)
		b.grant(1, 2)
		b.put("k", 1)
		b.sleep(time.Minute)
		b.wantKey("k", true, "follower, a minute past the deadline")
		if _, ok := b.store.Lease(1); !ok {
			t.Fatal("a follower revoked the lease")
		}
		// Leadership arrives: the expired lease goes within one retry
		// interval.
		b.cluster.follower.Store(false)
		b.sleep(lessorRetryInterval)
		b.wantKey("k", false, "after becoming leader")
	})
}

// A member that becomes leader continues each countdown from the last
// checkpoint it applied, not from its grant and not from its election.
func TestLeaseNewLeaderContinuesFromCheckpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, LeaseConfig{}, true)
		b.grant(1, 30)
		b.put("k", 1)
		b.grant(2, 30)
		b.put("k2", 2)
		b.sleep(10 * time.Second)
		// The (other) leader checkpoints: lease 1 has 5 s left; lease 2 has
		// 25 s, more than this member's own estimate (20 s), which stands.
		err := b.applyRaw(&pb.InternalRaftRequest{
			Header: &pb.RequestHeader{ID: b.basis()},
			LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: []*pb.LeaseCheckpoint{
				{ID: 1, Remaining_TTL: 5}, {ID: 2, Remaining_TTL: 25},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if l, _ := b.store.Lease(1); l.RemainingTTL != 5 {
			t.Fatalf("store remaining = %d, want 5", l.RemainingTTL)
		}
		b.sleep(2 * time.Second)
		b.cluster.follower.Store(false) // this member now leads
		b.srv.lessor.kick()
		b.sleep(3*time.Second + testRevokeMargin - time.Nanosecond)
		b.wantKey("k", true, "new leader, before the checkpointed deadline")
		b.sleep(time.Nanosecond)
		b.wantKey("k", false, "new leader, at the checkpointed deadline + margin")
		b.sleep(15*time.Second - time.Nanosecond)
		b.wantKey("k2", true, "the longer lease, before its deadline")
		b.sleep(time.Nanosecond)
		b.wantKey("k2", false, "the longer lease, at its deadline + margin")
	})
}

// A checkpoint never raises a deadline: a member's own estimate stands when
// the checkpoint promises more.
func TestLeaseCheckpointNeverExtends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, LeaseConfig{}, false)
		b.grant(1, 10)
		b.put("k", 1)
		b.sleep(5 * time.Second)
		if err := b.applyRaw(&pb.InternalRaftRequest{
			Header:          &pb.RequestHeader{ID: b.basis()},
			LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: []*pb.LeaseCheckpoint{{ID: 1, Remaining_TTL: 9}}},
		}); err != nil {
			t.Fatal(err)
		}
		b.sleep(5*time.Second + testRevokeMargin)
		b.wantKey("k", false, "at the original deadline + margin")
	})
}

// A checkpoint computed before a renewal, but committed after it, is stale
// and must not cut the renewal short.
func TestLeaseStaleCheckpointIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, LeaseConfig{}, false)
		b.grant(1, 10)
		b.put("k", 1)
		b.sleep(3 * time.Second)
		stale := b.basis() // the leader looks: 7 s left
		b.renew(1)         // a keepalive commits first: deadline 13 s
		if err := b.applyRaw(&pb.InternalRaftRequest{
			Header:          &pb.RequestHeader{ID: stale},
			LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: []*pb.LeaseCheckpoint{{ID: 1, Remaining_TTL: 7}}},
		}); err != nil {
			t.Fatal(err)
		}
		if l, _ := b.store.Lease(1); l.RemainingTTL != 0 || l.RenewedAt <= stale {
			t.Fatalf("store lease = %+v, want the renewal kept and the stale checkpoint ignored", l)
		}
		b.sleep(10*time.Second + testRevokeMargin - time.Nanosecond)
		b.wantKey("k", true, "before the renewed deadline")
		b.sleep(time.Nanosecond)
		b.wantKey("k", false, "at the renewed deadline + margin")
	})
}

// An expiry revoke decided before a renewal, but committed after it, is
// skipped on every member (the check reads only replicated state).
func TestLeaseExpiryRevokeLosesToRenewal(t *testing.T) {
	store := mvcc.New()
	sm := NewStateMachine(store)
	rep := &localReplicator{sm: sm}
	apply := func(r *pb.InternalRaftRequest) *result {
		t.Helper()
		data, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		v, err := rep.Propose(context.Background(), data)
		if err != nil {
			t.Fatal(err)
		}
		return v.(*result)
	}
	apply(&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: 1, TTL: 5}}) // index 1
	apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k"), Lease: 1}})  // index 2
	renewal := apply(&pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{
		Checkpoints: []*pb.LeaseCheckpoint{{ID: 1}},
	}}) // index 3
	if ka, ok := renewal.resp.(*pb.LeaseKeepAliveResponse); !ok || ka.TTL != 5 || renewal.err != nil {
		t.Fatalf("renewal result = %+v", renewal)
	}
	res := apply(&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 2}, LeaseRevoke: &pb.LeaseRevokeRequest{ID: 1}})
	if !errors.Is(res.err, errLeaseRenewed) {
		t.Fatalf("stale expiry revoke: %v, want errLeaseRenewed", res.err)
	}
	if !leaseKeyExists(t, store, "k") {
		t.Fatal("stale expiry revoke deleted the key")
	}
	// The same revoke applied to a replica restored from a snapshot decides
	// the same way.
	replica := mvcc.New()
	var buf bytes.Buffer
	if _, err := store.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	rsm := NewStateMachine(replica)
	if err := rsm.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	data, _ := proto.Marshal(&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 2}, LeaseRevoke: &pb.LeaseRevokeRequest{ID: 1}})
	if r := rsm.Apply(5, data).(*result); !errors.Is(r.err, errLeaseRenewed) {
		t.Fatalf("restored replica: %v, want errLeaseRenewed", r.err)
	}
	// A revoke decided after seeing the renewal goes through.
	res = apply(&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 4}, LeaseRevoke: &pb.LeaseRevokeRequest{ID: 1}})
	if res.err != nil || leaseKeyExists(t, store, "k") {
		t.Fatalf("current expiry revoke: %v, key exists %v", res.err, leaseKeyExists(t, store, "k"))
	}
	// Renewing an unknown lease answers ErrLeaseNotFound.
	res = apply(&pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: []*pb.LeaseCheckpoint{{ID: 1}}}})
	if !errors.Is(res.err, mvcc.ErrLeaseNotFound) {
		t.Fatalf("renew of a revoked lease: %v", res.err)
	}
	// The same id granted again (index 7, with a key at 8): an expiry revoke
	// or a checkpoint decided about the old lease (basis 6) leaves the new
	// one alone.
	apply(&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: 1, TTL: 5}})
	apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k2"), Lease: 1}})
	res = apply(&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 6}, LeaseRevoke: &pb.LeaseRevokeRequest{ID: 1}})
	if !errors.Is(res.err, errLeaseRenewed) || !leaseKeyExists(t, store, "k2") {
		t.Fatalf("expiry revoke of the old lease hit the new one: %v, key exists %v", res.err, leaseKeyExists(t, store, "k2"))
	}
	apply(&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 6}, LeaseCheckpoint: &pb.LeaseCheckpointRequest{
		Checkpoints: []*pb.LeaseCheckpoint{{ID: 1, Remaining_TTL: 1}},
	}})
	if l, _ := store.Lease(1); l.RemainingTTL != 0 {
		t.Fatalf("stale checkpoint of the old lease applied to the new one: %+v", l)
	}
}

// The leader checkpoints remaining TTLs; a member restoring a snapshot
// continues from them.
func TestLeaseLeaderCheckpointsAndRestore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, LeaseConfig{CheckpointInterval: 5 * time.Second}, false)
		b.grant(1, 20)
		b.put("k", 1)
		b.grant(2, 20)
		b.sleep(2 * time.Second)
		b.renew(2) // renewed at 2 s: its countdown restarts
		b.sleep(3 * time.Second)
		if l, _ := b.store.Lease(1); l.RemainingTTL != 15 {
			t.Fatalf("lease 1 store remaining after the first checkpoint = %d, want 15", l.RemainingTTL)
		}
		if l, _ := b.store.Lease(2); l.RemainingTTL != 17 || l.RenewedAt == 0 {
			t.Fatalf("lease 2 store entry = %+v, want 17 s left since its renewal", l)
		}
		b.sleep(5 * time.Second)
		if l, _ := b.store.Lease(1); l.RemainingTTL != 10 {
			t.Fatalf("lease 1 store remaining after the second checkpoint = %d, want 10", l.RemainingTTL)
		}

		// A new member restores a snapshot taken now (t = 10 s).
		var buf bytes.Buffer
		if _, err := b.store.Snapshot().WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		store2 := mvcc.New()
		sm2 := NewStateMachine(store2)
		b2 := startBubble(t, store2, sm2, LeaseConfig{}, true)
		if err := sm2.Restore(&buf); err != nil {
			t.Fatal(err)
		}
		if left, ttl, ok := b2.srv.lessor.remaining(1); !ok || left != 10*time.Second || ttl != 20 {
			t.Fatalf("restored lease 1: %v left of %d (%v), want 10 s", left, ttl, ok)
		}
		if left, _, ok := b2.srv.lessor.remaining(2); !ok || left != 12*time.Second {
			t.Fatalf("restored lease 2: %v left (%v), want the 12 s its checkpoint holds", left, ok)
		}
		// The restored member takes over: lease 1 goes at 10 s + testRevokeMargin
		// from the restore.
		b.cluster.follower.Store(true)
		b2.cluster.follower.Store(false)
		b2.srv.lessor.kick()
		b.sleep(10*time.Second + testRevokeMargin - time.Nanosecond)
		b2.wantKey("k", true, "restored leader, before the checkpointed deadline")
		b.sleep(time.Nanosecond)
		b2.wantKey("k", false, "restored leader, at the checkpointed deadline + margin")
	})
}

// UseStateMachine adopts leases granted before it was called.
func TestLeaseAttachAdoptsExistingLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := mvcc.New()
		if err := store.LeaseGrant(9, 4, 0); err != nil {
			t.Fatal(err)
		}
		b := newBubbleOn(t, store)
		if left, _, ok := b.srv.lessor.remaining(9); !ok || left != 4*time.Second {
			t.Fatalf("adopted lease: %v, %v", left, ok)
		}
		b.sleep(4*time.Second + testRevokeMargin)
		if _, ok := store.Lease(9); ok {
			t.Fatal("adopted lease did not expire")
		}
	})
}

func newBubbleOn(t *testing.T, store *mvcc.Store) *bubble {
	t.Helper()
	return startBubble(t, store, NewStateMachine(store), LeaseConfig{}, false)
}

// A keepalive on a lease whose countdown has run out, but whose revoke has
// not been applied yet, finds no lease (TTL 0), as etcd's: it never revives
// the lease.
func TestLeaseKeepAliveAfterDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, LeaseConfig{}, false)
		b.grant(1, 5)
		b.put("k", 1)
		b.sleep(5 * time.Second) // the deadline; the revoke waits for the margin
		b.wantKey("k", true, "at the deadline, before the revoke margin")
		if ttl, err := b.srv.renew(b.ctx, 1); err != nil || ttl != 0 {
			t.Fatalf("keepalive after the deadline: ttl %d, %v; want 0 (lease not found)", ttl, err)
		}
		b.sleep(testRevokeMargin)
		b.wantKey("k", false, "after the revoke margin")
		if _, ok := b.store.Lease(1); ok {
			t.Fatal("the lease survived its deadline")
		}
	})
}
