package kvapi

import (
	"context"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// newLeaseBenchServer returns a Server over a local one-member log with its
// lessor running, called directly (no gRPC).
func newLeaseBenchServer(b *testing.B) *Server {
	b.Helper()
	store := mvcc.New()
	sm := NewStateMachine(store)
	srv, err := NewServer(Config{}, store, &localReplicator{sm: sm}, fixedCluster{})
	if err != nil {
		b.Fatal(err)
	}
	srv.UseStateMachine(sm)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Run(ctx)
	}()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	return srv
}

// BenchmarkLeaseRenew measures one keepalive: encode, apply, lessor update.
func BenchmarkLeaseRenew(b *testing.B) {
	srv := newLeaseBenchServer(b)
	ctx := context.Background()
	g, err := (leaseServer{Server: srv}).LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 60})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if ttl, err := srv.renew(ctx, g.ID); err != nil || ttl != 60 {
			b.Fatalf("renew: %d, %v", ttl, err)
		}
	}
}

// BenchmarkLeaseGrantRevoke measures a server-chosen grant and its revoke
// while 10,000 other leases are tracked.
func BenchmarkLeaseGrantRevoke(b *testing.B) {
	srv := newLeaseBenchServer(b)
	ctx := context.Background()
	ls := leaseServer{Server: srv}
	for range 10000 {
		if _, err := ls.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 600}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		g, err := ls.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 60})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ls.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: g.ID}); err != nil {
			b.Fatal(err)
		}
	}
}
