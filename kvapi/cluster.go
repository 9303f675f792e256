package kvapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// clusterServer is etcd's Cluster service. Membership in meshkv follows the
// mesh (members join and are replaced automatically), so the calls that
// change membership by peer URL are not offered.
type clusterServer struct{ *Server }

var _ pb.ClusterServer = clusterServer{}

func (s clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.Linearizable {
		if err := s.readBarrier(ctx); err != nil {
			return nil, err
		}
	}
	return &pb.MemberListResponse{
		Header:  s.header(s.store.Rev()),
		Members: s.cluster.Members(),
	}, nil
}

func (s clusterServer) MemberAdd(context.Context, *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	return nil, status.Error(codes.Unimplemented, "meshkv: members join through the mesh; start a node with --peers instead of member add")
}

func (s clusterServer) MemberRemove(context.Context, *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	return nil, status.Error(codes.Unimplemented, "meshkv: member remove is not supported yet")
}

func (s clusterServer) MemberUpdate(context.Context, *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	return nil, status.Error(codes.Unimplemented, "meshkv: members have no peer URLs to update; membership follows the mesh")
}

func (s clusterServer) MemberPromote(context.Context, *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	return nil, status.Error(codes.Unimplemented, "meshkv: member promote is not supported yet")
}
