package kvapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// switchCluster is a one-member cluster whose leadership a test switches.
type switchCluster struct {
	fixedCluster
	follower atomic.Bool
}

func (c *switchCluster) RaftStatus() RaftStatus {
	st := c.fixedCluster.RaftStatus()
	if c.follower.Load() {
		st.Leader = 0x99 // someone else
	}
	return st
}

func (c *switchCluster) LeaderTerm() (uint64, uint64) {
	st := c.RaftStatus()
	return st.Leader, st.Term
}

// leaseTestServer is newTestServer with the lessor fed by the state machine,
// a switchable cluster, and Server.Run running.
type leaseTestServer struct {
	*testServer
	cluster *switchCluster
	lease   pb.LeaseClient
}

func newLeaseTestServer(t *testing.T, lc LeaseConfig) *leaseTestServer {
	t.Helper()
	ts := newTestServer(t, Config{})
	cl := &switchCluster{}
	ts.srv.cluster = cl // before any request
	if err := ts.srv.SetLeaseConfig(lc); err != nil {
		t.Fatal(err)
	}
	ts.srv.UseClient(ts.cli)
	ts.srv.UseStateMachine(ts.srv.rep.(*localReplicator).sm)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ts.srv.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &leaseTestServer{testServer: ts, cluster: cl, lease: pb.NewLeaseClient(ts.conn)}
}

func leaseTestCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// leaseWantStatus fails unless err is the gRPC error want (same code and message).
func leaseWantStatus(t *testing.T, err, want error) {
	t.Helper()
	got, want2 := status.Convert(err), status.Convert(want)
	if err == nil || got.Code() != want2.Code() || got.Message() != want2.Message() {
		t.Fatalf("error = %v, want %v", err, want)
	}
}

func TestLeaseGrant(t *testing.T) {
	ts := newLeaseTestServer(t, LeaseConfig{})
	ctx := leaseTestCtx(t)

	for _, tc := range []struct{ ask, want int64 }{{-5, 2}, {0, 2}, {1, 2}, {2, 2}, {10, 10}, {mvcc.MaxLeaseTTL, mvcc.MaxLeaseTTL}} {
		resp, err := ts.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: tc.ask})
		if err != nil {
			t.Fatalf("grant ttl %d: %v", tc.ask, err)
		}
		if resp.TTL != tc.want || resp.ID <= 0 {
			t.Errorf("grant ttl %d: got id %d ttl %d, want positive id, ttl %d", tc.ask, resp.ID, resp.TTL, tc.want)
		}
		if resp.Header == nil || resp.Header.ClusterId != 0xc1 || resp.Header.MemberId != 0x31 || resp.Header.Revision != ts.store.Rev() {
			t.Errorf("grant header = %v", resp.Header)
		}
		if l, ok := ts.store.Lease(resp.ID); !ok || l.TTL != tc.want {
			t.Errorf("store lease %d = %+v, %v", resp.ID, l, ok)
		}
	}

	// Client-chosen ids, negative ones included; a taken id is refused.
	for _, id := range []int64{42, -7} {
		resp, err := ts.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: 5})
		if err != nil || resp.ID != id || resp.TTL != 5 {
			t.Fatalf("grant id %d = %v, %v", id, resp, err)
		}
		_, err = ts.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: 5})
		leaseWantStatus(t, err, rpctypes.ErrGRPCLeaseExist)
	}
	if _, err := ts.cli.Grant(ctx, 5); err != nil {
		t.Fatal(err)
	}
	_, err := ts.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: mvcc.MaxLeaseTTL + 1})
	leaseWantStatus(t, err, rpctypes.ErrGRPCLeaseTTLTooLarge)
	if status.Code(err) != codes.OutOfRange {
		t.Errorf("code = %v, want OutOfRange", status.Code(err))
	}
	if _, err := ts.cli.Grant(ctx, mvcc.MaxLeaseTTL+1); !errors.Is(err, rpctypes.ErrLeaseTTLTooLarge) {
		t.Errorf("clientv3 grant too large: %v", err)
	}
}

// leaseRevisionEvents returns the events of revision rev.
func leaseRevisionEvents(t *testing.T, s *mvcc.Store, rev int64) []mvccpb.Event {
	t.Helper()
	var out []mvccpb.Event
	err := s.History(rev, rev+1, func(r int64, evs []mvccpb.Event) bool {
		if r == rev {
			out = append(out, evs...)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLeaseRevoke(t *testing.T) {
	ts := newLeaseTestServer(t, LeaseConfig{})
	ctx := leaseTestCtx(t)

	_, err := ts.lease.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 12345})
	leaseWantStatus(t, err, rpctypes.ErrGRPCLeaseNotFound)
	if _, err := ts.cli.Revoke(ctx, 12345); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("clientv3 revoke unknown: %v", err)
	}

	// A lease with no keys: revoking creates no revision.
	g, err := ts.cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	before := ts.store.Rev()
	if _, err := ts.cli.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if ts.store.Rev() != before {
		t.Errorf("revoking an empty lease moved the revision %d -> %d", before, ts.store.Rev())
	}

	// With keys: all deleted in one revision, in key order.
	g, err = ts.cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"k/c", "k/a", "k/b"} {
		if _, err := ts.cli.Put(ctx, k, "v", clientv3.WithLease(g.ID)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.cli.Put(ctx, "k/other", "v"); err != nil {
		t.Fatal(err)
	}
	resp, err := ts.lease.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: int64(g.ID)})
	if err != nil {
		t.Fatal(err)
	}
	rev := ts.store.Rev()
	if resp.Header.Revision != rev || resp.Header.MemberId != 0x31 {
		t.Errorf("revoke header = %v, want revision %d", resp.Header, rev)
	}
	evs := leaseRevisionEvents(t, ts.store, rev)
	var got []string
	for evi := range evs {
		ev := &evs[evi]
		if ev.Type != mvccpb.DELETE {
			t.Errorf("event %v, want DELETE", ev.Type)
		}
		got = append(got, string(ev.Kv.Key))
	}
	if fmt.Sprint(got) != "[k/a k/b k/c]" {
		t.Errorf("revoke deleted %v in revision %d, want [k/a k/b k/c]", got, rev)
	}
	if r, err := ts.cli.Get(ctx, "k/", clientv3.WithPrefix()); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Key) != "k/other" {
		t.Errorf("after revoke: %v, %v", r, err)
	}
	if _, ok := ts.store.Lease(int64(g.ID)); ok {
		t.Error("lease still in the store")
	}
	if _, _, ok := ts.srv.lessor.remaining(int64(g.ID)); ok {
		t.Error("lease still in the lessor")
	}
}

func TestLeaseKeepAlive(t *testing.T) {
	ts := newLeaseTestServer(t, LeaseConfig{})
	ctx := leaseTestCtx(t)
	g, err := ts.cli.Grant(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}

	stream, err := ts.lease.LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ id, ttl int64 }{{int64(g.ID), 7}, {999, 0}, {int64(g.ID), 7}} {
		rev := ts.store.Rev()
		if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: tc.id}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("keepalive %d: %v", tc.id, err)
		}
		if resp.ID != tc.id || resp.TTL != tc.ttl || resp.Header == nil || resp.Header.Revision != rev {
			t.Errorf("keepalive %d = %v, want ttl %d at revision %d", tc.id, resp, tc.ttl, rev)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Errorf("after CloseSend: %v, want EOF", err)
	}
	// The renewal reached the store with its log index.
	if l, _ := ts.store.Lease(int64(g.ID)); l.RenewedAt == 0 || l.RemainingTTL != 0 {
		t.Errorf("store lease = %+v, want a renewal index and no checkpoint", l)
	}

	ka, err := ts.cli.KeepAliveOnce(ctx, g.ID)
	if err != nil || ka.TTL != 7 || ka.ID != g.ID {
		t.Errorf("clientv3 KeepAliveOnce = %v, %v", ka, err)
	}
	if _, err := ts.cli.KeepAliveOnce(ctx, 999); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("clientv3 KeepAliveOnce unknown: %v, want ErrLeaseNotFound", err)
	}
}

func TestLeaseTimeToLiveAndLeases(t *testing.T) {
	ts := newLeaseTestServer(t, LeaseConfig{})
	ctx := leaseTestCtx(t)
	g1, err := ts.cli.Grant(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := ts.cli.Grant(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"z", "a", "m"} {
		if _, err := ts.cli.Put(ctx, k, "v", clientv3.WithLease(g1.ID)); err != nil {
			t.Fatal(err)
		}
	}

	r, err := ts.lease.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: int64(g1.ID), Keys: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != int64(g1.ID) || r.GrantedTTL != 100 || r.TTL < 98 || r.TTL > 99 || fmt.Sprintf("%s", r.Keys) != "[a m z]" {
		t.Errorf("TimeToLive = %v", r)
	}
	if r.Header == nil || r.Header.Revision != ts.store.Rev() {
		t.Errorf("TimeToLive header = %v", r.Header)
	}
	r, err = ts.lease.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: int64(g2.ID)})
	if err != nil || r.Keys != nil || r.GrantedTTL != 50 {
		t.Errorf("TimeToLive without keys = %v, %v", r, err)
	}
	r, err = ts.lease.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 4242, Keys: true})
	if err != nil || r.TTL != -1 || r.ID != 4242 || r.Header == nil {
		t.Errorf("TimeToLive unknown = %v, %v; want TTL -1, no error", r, err)
	}
	cr, err := ts.cli.TimeToLive(ctx, 4242)
	if err != nil || cr.TTL != -1 {
		t.Errorf("clientv3 TimeToLive unknown = %v, %v", cr, err)
	}

	lr, err := ts.cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []clientv3.LeaseID
	for _, l := range lr.Leases {
		ids = append(ids, l.ID)
	}
	want := []clientv3.LeaseID{min(g1.ID, g2.ID), max(g1.ID, g2.ID)}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("Leases = %v, want %v", ids, want)
	}
}

func TestLeasePutUnknownLease(t *testing.T) {
	ts := newLeaseTestServer(t, LeaseConfig{})
	ctx := leaseTestCtx(t)
	_, err := pb.NewKVClient(ts.conn).Put(ctx, &pb.PutRequest{Key: []byte("k"), Lease: 777})
	leaseWantStatus(t, err, rpctypes.ErrGRPCLeaseNotFound)
}

// TestLeaseExpiryWallClock runs the real loop on the real clock with a 1 s
// TTL: keys go after TTL + testRevokeMargin and not before, and a kept-alive lease
// outlives its TTL.
func TestLeaseExpiryWallClock(t *testing.T) {
	ts := newLeaseTestServer(t, LeaseConfig{MinTTL: time.Second, RevokeMargin: 50 * time.Millisecond})
	ctx := leaseTestCtx(t)

	kept, err := ts.cli.Grant(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	kctx, kcancel := context.WithCancel(ctx)
	defer kcancel()
	kac, err := ts.cli.KeepAlive(kctx, kept.ID)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range kac {
		}
	}()
	if _, err := ts.cli.Put(ctx, "kept", "v", clientv3.WithLease(kept.ID)); err != nil {
		t.Fatal(err)
	}

	g, err := ts.cli.Grant(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := ts.cli.Put(ctx, "gone", "v", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := ts.cli.Get(ctx, "gone")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling the condition
	}
	took := time.Since(start)
	if took < time.Second || took > 2*time.Second {
		t.Errorf("key with a 1 s lease vanished after %v, want within [1 s, 2 s]", took)
	}
	// The kept-alive lease outlived two TTLs.
	for time.Since(start) < 2500*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
	}
	if r, err := ts.cli.Get(ctx, "kept"); err != nil || len(r.Kvs) != 1 {
		t.Errorf("kept-alive key: %v, %v", r, err)
	}
	kcancel()
}

func TestLeaseConfigValidate(t *testing.T) {
	for _, c := range []LeaseConfig{{MinTTL: -1}, {CheckpointInterval: -1}, {RevokeMargin: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if err := (LeaseConfig{}).Validate(); err != nil {
		t.Error(err)
	}
	tm := LeaseConfig{}.timing()
	if tm.minTTL != 2 || tm.checkpointInterval != 5*time.Second || tm.revokeMargin != 100*time.Millisecond {
		t.Errorf("defaults = %+v", tm)
	}
	// etcd's rule at its default timing gives its 2 s minimum.
	if got := LeaseConfigFor(100*time.Millisecond, time.Second).timing(); got.minTTL != 2 || got.revokeMargin != 100*time.Millisecond {
		t.Errorf("LeaseConfigFor(100ms, 1s) = %+v", got)
	}
	if got := LeaseConfigFor(10*time.Millisecond, 100*time.Millisecond).timing(); got.minTTL != 1 {
		t.Errorf("LeaseConfigFor(10ms, 100ms) min TTL = %d, want 1", got.minTTL)
	}
}

// leaseKeyExists reports whether key exists in the store.
func leaseKeyExists(t *testing.T, s *mvcc.Store, key string) bool {
	t.Helper()
	r, err := s.Range(&pb.RangeRequest{Key: []byte(key)})
	if err != nil {
		t.Fatal(err)
	}
	return len(r.Kvs) == 1 && bytes.Equal(r.Kvs[0].Key, []byte(key))
}
