package kvapi

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// Lease timing defaults, as etcd's at its default raft timing (100 ms tick,
// 1 s election timeout).
const (
	// DefaultLeaseMinTTL is the shortest TTL a lease gets: etcd's 1.5
	// election timeouts, rounded up to whole seconds.
	DefaultLeaseMinTTL = 2 * time.Second
	// DefaultLeaseCheckpointInterval is how often the leader checkpoints
	// remaining TTLs through raft.
	DefaultLeaseCheckpointInterval = 5 * time.Second
	// DefaultLeaseRevokeMargin is how long after a lease's deadline the
	// leader revokes it: one raft tick, to cover the gap between the
	// leader applying a renewal and the client receiving its answer.
	DefaultLeaseRevokeMargin = 100 * time.Millisecond
)

// LeaseConfig sets the lease timing. Zero values mean the defaults.
type LeaseConfig struct {
	// MinTTL is the shortest TTL a lease is granted; shorter requests
	// (including 0 and negative TTLs) are raised to it, rounded up to whole
	// seconds (default DefaultLeaseMinTTL). LeaseConfigFor derives it from
	// raft timing as etcd does.
	MinTTL time.Duration
	// CheckpointInterval is how often the leader records remaining TTLs in
	// the log, so that members that restored a snapshot, or become leader,
	// continue each countdown (default DefaultLeaseCheckpointInterval).
	CheckpointInterval time.Duration
	// RevokeMargin is added to a lease's deadline before the leader revokes
	// it (default DefaultLeaseRevokeMargin).
	RevokeMargin time.Duration
}

// LeaseConfigFor returns the lease timing etcd uses for a raft tick and
// election timeout: minimum TTL 1.5 election timeouts, revoke margin one
// tick.
func LeaseConfigFor(tick, electionTimeout time.Duration) LeaseConfig {
	return LeaseConfig{MinTTL: electionTimeout * 3 / 2, RevokeMargin: tick}
}

// Validate reports a configuration that cannot work. It changes nothing.
func (c LeaseConfig) Validate() error {
	switch {
	case c.MinTTL < 0:
		return fmt.Errorf("kvapi: negative lease MinTTL %v", c.MinTTL)
	case int64(c.MinTTL/time.Second) > mvcc.MaxLeaseTTL:
		return fmt.Errorf("kvapi: lease MinTTL %v above the largest TTL", c.MinTTL)
	case c.CheckpointInterval < 0:
		return fmt.Errorf("kvapi: negative lease CheckpointInterval %v", c.CheckpointInterval)
	case c.RevokeMargin < 0:
		return fmt.Errorf("kvapi: negative lease RevokeMargin %v", c.RevokeMargin)
	}
	return nil
}

// leaseTiming is a LeaseConfig with the defaults filled in.
type leaseTiming struct {
	minTTL             int64 // seconds
	checkpointInterval time.Duration
	revokeMargin       time.Duration
}

func (c LeaseConfig) timing() leaseTiming {
	if c.MinTTL == 0 {
		c.MinTTL = DefaultLeaseMinTTL
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultLeaseCheckpointInterval
	}
	if c.RevokeMargin == 0 {
		c.RevokeMargin = DefaultLeaseRevokeMargin
	}
	return leaseTiming{
		minTTL:             int64((c.MinTTL + time.Second - 1) / time.Second),
		checkpointInterval: c.CheckpointInterval,
		revokeMargin:       c.RevokeMargin,
	}
}

// SetLeaseConfig sets the lease timing. Call it before serving; without it
// the defaults apply.
func (s *Server) SetLeaseConfig(c LeaseConfig) error {
	if err := c.Validate(); err != nil {
		return err
	}
	s.lessor.setTiming(c.timing())
	return nil
}

// UseStateMachine connects the lessor and the watch hub to the state machine
// that applies this member's log (the one fed by the Server's Replicator), so
// that the lessor learns of every lease grant, renewal, checkpoint, revoke
// and snapshot as it is applied, and watchers replay a restored snapshot's
// revisions at once. Without it leases never expire. Call it once, before the
// replicator applies entries; the leases already in the store are adopted
// with their full (or checkpointed) TTL from now.
//
// It also makes the state machine apply auth requests to the Server's auth
// store (Config.Auth).
func (s *Server) UseStateMachine(sm *StateMachine) {
	s.sm.Store(sm)
	sm.lessor.Store(s.lessor)
	sm.watch.Store(s.watch)
	sm.UseAuth(s.auth)
	s.lessor.attach()
}

func (s *Server) registerLease(g *grpc.Server) { pb.RegisterLeaseServer(g, leaseServer{Server: s}) }

// leaseServer is etcd's Lease service.
type leaseServer struct {
	*Server
	pb.UnimplementedLeaseServer
}

var _ pb.LeaseServer = leaseServer{}

// leaseError maps an error from a lease proposal to etcd's gRPC error.
func leaseError(ctx context.Context, err error) error {
	if errors.Is(err, mvcc.ErrLeaseTTLTooLarge) {
		return rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	return togRPCError(ctx, err)
}

// randomLeaseID returns a random positive lease id.
func randomLeaseID() int64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		if id := int64(binary.LittleEndian.Uint64(b[:]) &^ (1 << 63)); id != 0 {
			return id
		}
	}
}

// grantAttempts bounds the retries of a grant whose server-chosen id turned
// out to be taken.
const grantAttempts = 3

func (s leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if _, err := s.requireAuth(ctx); err != nil {
		return nil, err
	}
	if r.TTL > mvcc.MaxLeaseTTL {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	if !s.lessor.isAttached() {
		s.lessor.warnOnce.Do(func() {
			s.cfg.Logger.Warn("kvapi: leases will not expire: no state machine reports to the lessor (Server.UseStateMachine)")
		})
	}
	req := &pb.LeaseGrantRequest{ID: r.ID, TTL: max(r.TTL, s.lessor.timing().minTTL)}
	for attempt := 1; ; attempt++ {
		chosen := req.ID == 0
		if chosen {
			req.ID = randomLeaseID()
			for _, taken := s.store.Lease(req.ID); taken; _, taken = s.store.Lease(req.ID) {
				req.ID = randomLeaseID()
			}
		}
		v, err := s.propose(ctx, &pb.InternalRaftRequest{LeaseGrant: req})
		if chosen && errors.Is(err, rpctypes.ErrGRPCLeaseExist) && attempt < grantAttempts {
			req.ID = 0 // another grant took the id meanwhile: choose again
			continue
		}
		if err != nil {
			return nil, leaseError(ctx, err)
		}
		resp, ok := v.(*pb.LeaseGrantResponse)
		if !ok {
			return nil, status.Errorf(codes.Internal, "etcdserver: unexpected grant result %T", v)
		}
		resp.Header = s.header(s.store.Rev())
		return resp, nil
	}
}

// LeaseRevoke needs credentials while authentication is enabled, and write
// permission on every key attached to the lease (checked when applied).
func (s leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	ai, err := s.requireAuth(ctx)
	if err != nil {
		return nil, err
	}
	v, err := s.propose(ctx, &pb.InternalRaftRequest{Header: requestHeader(ai), LeaseRevoke: r})
	if err != nil {
		return nil, leaseError(ctx, err)
	}
	resp, ok := v.(*pb.LeaseRevokeResponse)
	if !ok {
		return nil, status.Errorf(codes.Internal, "etcdserver: unexpected revoke result %T", v)
	}
	s.fillHeader(&resp.Header)
	return resp, nil
}

// checkRenew checks a keepalive as etcd 3.7 does: credentials while
// authentication is enabled, and write permission on every key attached to
// the lease, unchanged auth state meanwhile.
func (s *Server) checkRenew(ctx context.Context, id int64) error {
	if !s.auth.Enabled() {
		return nil
	}
	rev := s.auth.Revision()
	ai, err := s.requireAuth(ctx)
	if err != nil {
		return err
	}
	if err := s.auth.Checker().CheckLeaseWrite(ai, id, storeLeases{s.store}); err != nil {
		return authError(err)
	}
	if rev != s.auth.Revision() {
		return rpctypes.ErrGRPCAuthOldRevision
	}
	return nil
}

// renew replicates one keepalive and returns the lease's TTL, 0 if the lease
// does not exist. A lease whose countdown has run out on this member is
// treated as gone even before its revoke is applied, as etcd does: a
// keepalive never revives an expired lease.
func (s *Server) renew(ctx context.Context, id int64) (int64, error) {
	if left, _, ok := s.lessor.remaining(id); ok && left <= 0 {
		return 0, nil
	}
	v, err := s.propose(ctx, &pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{
		Checkpoints: []*pb.LeaseCheckpoint{{ID: id, Remaining_TTL: 0}},
	}})
	if errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	ka, ok := v.(*pb.LeaseKeepAliveResponse)
	if !ok {
		return 0, status.Errorf(codes.Internal, "etcdserver: unexpected keepalive result %T", v)
	}
	s.leaseCounts.renewed.Add(1)
	return ka.TTL, nil
}

func (s leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.checkRenew(ctx, req.ID); err != nil {
			return err
		}
		// The header is taken before the renewal, so its revision is never
		// above the one at which the renewal happened.
		resp := &pb.LeaseKeepAliveResponse{ID: req.ID, Header: s.header(s.store.Rev())}
		if resp.TTL, err = s.renew(ctx, req.ID); err != nil {
			return leaseError(ctx, err)
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// LeaseTimeToLive needs credentials while authentication is enabled, and,
// with the attached keys asked for, read permission on each (etcd 3.7).
func (s leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	ai, err := s.requireAuth(ctx)
	if err != nil {
		return nil, err
	}
	rev := s.auth.Revision()
	if r.Keys {
		if err := s.auth.Checker().CheckLeaseRead(ai, r.ID, storeLeases{s.store}); err != nil {
			return nil, authError(err)
		}
	}
	if err := s.readBarrier(ctx); err != nil {
		return nil, err
	}
	if r.Keys && s.auth.Enabled() && rev != s.auth.Revision() {
		return nil, rpctypes.ErrGRPCAuthOldRevision
	}
	info, ok := s.store.Lease(r.ID)
	if !ok {
		return &pb.LeaseTimeToLiveResponse{Header: s.header(s.store.Rev()), ID: r.ID, TTL: -1}, nil
	}
	ttl := info.TTL // a lease the lessor does not track never expires
	if left, _, ok := s.lessor.remaining(r.ID); ok {
		ttl = max(int64(left/time.Second), 0) // whole seconds, truncated, as etcd
	}
	resp := &pb.LeaseTimeToLiveResponse{
		Header:     s.header(s.store.Rev()),
		ID:         r.ID,
		TTL:        ttl,
		GrantedTTL: info.TTL,
	}
	if r.Keys {
		resp.Keys = make([][]byte, len(info.Keys))
		for i, k := range info.Keys {
			resp.Keys[i] = append([]byte(nil), k...)
		}
	}
	return resp, nil
}

// LeaseLeases lists every lease to admins; other users need read permission
// on every key attached to any lease (etcd 3.7).
func (s leaseServer) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	if err := s.readBarrier(ctx); err != nil {
		return nil, err
	}
	infos := s.store.Leases()
	if s.auth.Enabled() {
		rev := s.auth.Revision()
		ai, err := s.authInfo(ctx)
		if err != nil {
			return nil, err
		}
		ids := make([]int64, len(infos))
		for i, info := range infos {
			ids[i] = info.ID
		}
		if err := s.auth.Checker().CheckLeases(ai, ids, storeLeases{s.store}); err != nil {
			return nil, authError(err)
		}
		if rev != s.auth.Revision() {
			return nil, rpctypes.ErrGRPCAuthOldRevision
		}
	}
	resp := &pb.LeaseLeasesResponse{Header: s.header(s.store.Rev()), Leases: make([]*pb.LeaseStatus, len(infos))}
	for i, info := range infos {
		resp.Leases[i] = &pb.LeaseStatus{ID: info.ID}
	}
	return resp, nil
}
