package kvapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshkv/meshkv/kvapi/auth"
	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// kvServer serves etcd's KV service, RangeStream (etcd 3.7) included
// (rangestream.go).
type kvServer struct {
	*Server
	pb.UnimplementedKVServer
}

var _ pb.KVServer = kvServer{}

func (s kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := mvcc.CheckRange(r); err != nil {
		return nil, togRPCError(ctx, err)
	}
	if !r.Serializable {
		if err := s.readBarrier(ctx); err != nil {
			return nil, err
		}
	}
	stale, err := s.checkRead(ctx, func(c auth.Checker, ai *auth.AuthInfo) error {
		return c.IsRangePermitted(ai, r.Key, r.RangeEnd)
	})
	if err != nil {
		return nil, err
	}
	resp, err := s.store.Range(r)
	if err != nil {
		return nil, togRPCError(ctx, err)
	}
	if err := stale(); err != nil {
		return nil, err
	}
	s.ops.ranges.Add(1)
	s.fillHeader(&resp.Header)
	return resp, nil
}

func (s kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := mvcc.CheckPut(r); err != nil {
		return nil, togRPCError(ctx, err)
	}
	if s.overQuota() {
		return nil, rpctypes.ErrGRPCNoSpace
	}
	ai, err := s.authInfo(ctx)
	if err != nil {
		return nil, err
	}
	v, err := s.propose(ctx, &pb.InternalRaftRequest{Header: requestHeader(ai), Put: r})
	if err != nil {
		return nil, err
	}
	resp, ok := v.(*pb.PutResponse)
	if !ok {
		return nil, unexpected(v)
	}
	s.fillHeader(&resp.Header)
	return resp, nil
}

func (s kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := mvcc.CheckDeleteRange(r); err != nil {
		return nil, togRPCError(ctx, err)
	}
	ai, err := s.authInfo(ctx)
	if err != nil {
		return nil, err
	}
	v, err := s.propose(ctx, &pb.InternalRaftRequest{Header: requestHeader(ai), DeleteRange: r})
	if err != nil {
		return nil, err
	}
	resp, ok := v.(*pb.DeleteRangeResponse)
	if !ok {
		return nil, unexpected(v)
	}
	s.fillHeader(&resp.Header)
	return resp, nil
}

// Txn replicates transactions that write. A read-only transaction is served
// locally, after a linearizability barrier unless all its ranges are
// serializable, as etcd serves it.
func (s kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := mvcc.CheckTxn(r, s.cfg.MaxTxnOps); err != nil {
		return nil, togRPCError(ctx, err)
	}
	if mvcc.TxnReadOnly(r) {
		if !txnSerializable(r) {
			if err := s.readBarrier(ctx); err != nil {
				return nil, err
			}
		}
		stale, err := s.checkRead(ctx, func(c auth.Checker, ai *auth.AuthInfo) error {
			return c.CheckTxn(ai, r, storeLeases{s.store})
		})
		if err != nil {
			return nil, err
		}
		resp, err := s.store.Txn(r)
		if err != nil {
			return nil, togRPCError(ctx, err)
		}
		if err := stale(); err != nil {
			return nil, err
		}
		s.ops.countTxn(resp)
		s.fillHeader(&resp.Header)
		return resp, nil
	}
	if s.overQuota() && txnPuts(r) {
		return nil, rpctypes.ErrGRPCNoSpace
	}
	ai, err := s.authInfo(ctx)
	if err != nil {
		return nil, err
	}
	v, err := s.propose(ctx, &pb.InternalRaftRequest{Header: requestHeader(ai), Txn: r})
	if err != nil {
		return nil, err
	}
	resp, ok := v.(*pb.TxnResponse)
	if !ok {
		return nil, unexpected(v)
	}
	s.fillHeader(&resp.Header)
	return resp, nil
}

// Compact needs the root role while authentication is enabled, as in etcd.
func (s kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	v, err := s.propose(ctx, &pb.InternalRaftRequest{Compaction: r})
	if err != nil {
		return nil, err
	}
	resp, ok := v.(*pb.CompactionResponse)
	if !ok {
		return nil, unexpected(v)
	}
	s.fillHeader(&resp.Header)
	return resp, nil
}

// txnSerializable reports whether every range of a read-only txn asks for a
// serializable read.
func txnSerializable(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			if rr := op.GetRequestRange(); rr == nil || !rr.Serializable {
				return false
			}
		}
	}
	return true
}

// txnPuts reports whether a txn may put a key (in any branch, nested txns
// included).
func txnPuts(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			if op.GetRequestPut() != nil || op.GetRequestTxn() != nil && txnPuts(op.GetRequestTxn()) {
				return true
			}
		}
	}
	return false
}

func unexpected(v any) error {
	return status.Errorf(codes.Internal, "etcdserver: unexpected apply result %T", v)
}
