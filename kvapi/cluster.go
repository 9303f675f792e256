package kvapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// clusterServer is etcd's Cluster service. Members join through the mesh and
// dead ones are replaced automatically, so the calls that add or update
// members by peer URL are not offered; remove and promote are, for operators.
type clusterServer struct {
	*Server
	pb.UnimplementedClusterServer
}

// MembershipChanger is implemented by a Cluster that lets operators remove
// and promote members. It returns this package's sentinel errors
// (ErrMemberNotFound and the like, wrapped as it likes) or gRPC status
// errors, which reach the client unchanged.
type MembershipChanger interface {
	RemoveMember(ctx context.Context, id uint64) error
	PromoteMember(ctx context.Context, id uint64) error
}

var _ pb.ClusterServer = clusterServer{}

// MemberList needs credentials while authentication is enabled (etcd 3.7);
// the other calls need the root role.
func (s clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.Linearizable {
		if err := s.readBarrier(ctx); err != nil {
			return nil, err
		}
	}
	if _, err := s.requireAuth(ctx); err != nil {
		return nil, err
	}
	return &pb.MemberListResponse{
		Header:  s.header(0), // etcd's cluster service reports no revision
		Members: s.cluster.Members(),
	}, nil
}

func (s clusterServer) MemberAdd(ctx context.Context, _ *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "meshkv: members join through the mesh; start a node with --peers instead of member add")
}

func (s clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	mc, ok := s.cluster.(MembershipChanger)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "meshkv: this member cannot change membership")
	}
	if err := mc.RemoveMember(ctx, r.ID); err != nil {
		return nil, togRPCError(ctx, err)
	}
	return &pb.MemberRemoveResponse{Header: s.header(0), Members: s.cluster.Members()}, nil
}

func (s clusterServer) MemberUpdate(ctx context.Context, _ *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "meshkv: a member's peer URL is its mesh address, set by its own --mesh-listen; membership follows the mesh")
}

func (s clusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	mc, ok := s.cluster.(MembershipChanger)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "meshkv: this member cannot change membership")
	}
	if err := mc.PromoteMember(ctx, r.ID); err != nil {
		return nil, togRPCError(ctx, err)
	}
	return &pb.MemberPromoteResponse{Header: s.header(0), Members: s.cluster.Members()}, nil
}
