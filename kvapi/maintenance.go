package kvapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maintenanceServer is etcd's Maintenance service, as far as an in-memory
// store has meaning for it.
type maintenanceServer struct {
	*Server
	pb.UnimplementedMaintenanceServer
}

var _ pb.MaintenanceServer = maintenanceServer{}

// Alarm lists this member's NOSPACE alarm while the store is over its quota.
// The alarm is not latched as etcd's is: it clears by itself once compaction
// or deletes bring the store under the quota, so disarming it is accepted and
// changes nothing. Activating alarms is refused.
func (s maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if err := s.checkAlarm(ctx, r); err != nil {
		return nil, err
	}
	resp := &pb.AlarmResponse{Header: s.header(s.store.Rev())}
	switch r.Action {
	case pb.AlarmRequest_GET, pb.AlarmRequest_DEACTIVATE:
	default:
		return nil, status.Error(codes.Unimplemented, "meshkv: alarms cannot be raised by clients")
	}
	if s.overQuota() && (r.Alarm == pb.AlarmType_NONE || r.Alarm == pb.AlarmType_NOSPACE) {
		resp.Alarms = []*pb.AlarmMember{{MemberID: s.cluster.MemberID(), Alarm: pb.AlarmType_NOSPACE}}
	}
	return resp, nil
}

func (s maintenanceServer) Status(ctx context.Context, r *pb.StatusRequest) (*pb.StatusResponse, error) {
	if _, err := s.requireAuth(ctx); err != nil {
		return nil, err
	}
	rs := s.cluster.RaftStatus()
	// etcdctl's endpoint status divides by DbSize; etcd's database file is
	// never empty, and neither is the size we report.
	size := max(s.store.Size(), 1)
	return &pb.StatusResponse{
		Header:           s.header(s.store.Rev()),
		Version:          ServerVersion,
		DbSize:           size,
		DbSizeInUse:      size,
		Leader:           rs.Leader,
		RaftIndex:        rs.CommitIndex,
		RaftTerm:         rs.Term,
		RaftAppliedIndex: rs.AppliedIndex,
		IsLearner:        rs.IsLearner,
		StorageVersion:   StorageVersion,
		DbSizeQuota:      s.cfg.QuotaBytes,
		DowngradeInfo:    &pb.DowngradeInfo{},
		Errors:           s.cluster.Errors(),
	}, nil
}

// Defragment succeeds at once: an in-memory store has nothing to defragment.
func (s maintenanceServer) Defragment(ctx context.Context, r *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	return &pb.DefragmentResponse{Header: s.header(s.store.Rev())}, nil
}

// Hash is etcd's whole-store hash; meshkv answers it with the KV hash at the
// current revision, which is what the consistency checks compare.
func (s maintenanceServer) Hash(ctx context.Context, r *pb.HashRequest) (*pb.HashResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	rev := s.store.Rev()
	h, _, err := s.store.Hash(rev)
	if err != nil {
		return nil, togRPCError(ctx, err)
	}
	return &pb.HashResponse{Header: s.header(rev), Hash: h}, nil
}

func (s maintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	cur := s.store.Rev()
	rev := r.Revision
	if rev == 0 {
		rev = cur
	}
	h, compactRev, err := s.store.Hash(rev)
	if err != nil {
		return nil, togRPCError(ctx, err)
	}
	return &pb.HashKVResponse{Header: s.header(cur), Hash: h, CompactRevision: compactRev, HashRevision: rev}, nil
}

// LeaderMover is implemented by a Cluster that can hand leadership to another
// voter. Its errors are as MembershipChanger's.
type LeaderMover interface {
	MoveLeader(ctx context.Context, to uint64) error
}

// MoveLeader hands leadership to voter TargetID, as etcdctl move-leader. As in
// etcd, it must be sent to the leader.
func (s maintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	lm, ok := s.cluster.(LeaderMover)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "meshkv: this member cannot move leadership")
	}
	if err := lm.MoveLeader(ctx, r.TargetID); err != nil {
		return nil, togRPCError(ctx, err)
	}
	return &pb.MoveLeaderResponse{Header: s.header(s.store.Rev())}, nil
}

func (s maintenanceServer) Downgrade(ctx context.Context, _ *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "meshkv: downgrade does not apply to an in-memory store")
}

// checkAlarm checks an Alarm request as etcd 3.7 does: listing alarms needs
// credentials while authentication is enabled, changing them the root role.
// Maintenance requests other than Status and Alarm listing all need the
// root role.
func (s maintenanceServer) checkAlarm(ctx context.Context, r *pb.AlarmRequest) error {
	if r.Action == pb.AlarmRequest_GET {
		_, err := s.requireAuth(ctx)
		return err
	}
	return s.requireAdmin(ctx)
}
