package difftest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// message is an etcd request or response.
type message = proto.Message

// result is one server's answer to one request: a response, or an error as
// gRPC code and message.
type result struct {
	resp message // nil when err
	code codes.Code
	msg  string
}

func (r result) String() string {
	if r.resp == nil {
		return fmt.Sprintf("error %v %q", r.code, r.msg)
	}
	return describe(r.resp)
}

// header returns the response header, or nil on error or for responses
// without one.
func (r result) header() *pb.ResponseHeader {
	type headed interface{ GetHeader() *pb.ResponseHeader }
	if h, ok := r.resp.(headed); ok {
		return h.GetHeader()
	}
	return nil
}

// do sends one request to a target.
func do(ctx context.Context, tg *target, req message) result {
	var (
		resp message
		err  error
	)
	// Each branch assigns only on success, so that a typed nil pointer never
	// ends up in resp.
	switch r := req.(type) {
	case *pb.RangeRequest:
		var x *pb.RangeResponse
		if x, err = tg.kv.Range(ctx, r); err == nil {
			resp = x
		}
	case *pb.PutRequest:
		var x *pb.PutResponse
		if x, err = tg.kv.Put(ctx, r); err == nil {
			resp = x
		}
	case *pb.DeleteRangeRequest:
		var x *pb.DeleteRangeResponse
		if x, err = tg.kv.DeleteRange(ctx, r); err == nil {
			resp = x
		}
	case *pb.TxnRequest:
		var x *pb.TxnResponse
		if x, err = tg.kv.Txn(ctx, r); err == nil {
			resp = x
		}
	case *pb.CompactionRequest:
		var x *pb.CompactionResponse
		if x, err = tg.kv.Compact(ctx, r); err == nil {
			resp = x
		}
	case *pb.LeaseGrantRequest:
		var x *pb.LeaseGrantResponse
		if x, err = tg.lease.LeaseGrant(ctx, r); err == nil {
			resp = x
		}
	case *pb.LeaseRevokeRequest:
		var x *pb.LeaseRevokeResponse
		if x, err = tg.lease.LeaseRevoke(ctx, r); err == nil {
			resp = x
		}
	case *pb.LeaseTimeToLiveRequest:
		var x *pb.LeaseTimeToLiveResponse
		if x, err = tg.lease.LeaseTimeToLive(ctx, r); err == nil {
			resp = x
		}
	case *pb.LeaseLeasesRequest:
		var x *pb.LeaseLeasesResponse
		if x, err = tg.lease.LeaseLeases(ctx, r); err == nil {
			resp = x
		}
	default:
		panic(fmt.Sprintf("do: unsupported request %T", req))
	}
	if err != nil {
		s := status.Convert(err)
		return result{code: s.Code(), msg: s.Message()}
	}
	normalize(resp)
	return result{resp: resp}
}

// normalize clears what legitimately differs between two servers: the
// header fields that name the cluster, member and raft term, the remaining
// TTL of a lease (it counts down in wall-clock time), and the order of
// lists that etcd builds from maps.
func normalize(m message) {
	switch r := m.(type) {
	case *pb.RangeResponse:
		clearHeader(r.Header)
	case *pb.PutResponse:
		clearHeader(r.Header)
	case *pb.DeleteRangeResponse:
		clearHeader(r.Header)
	case *pb.TxnResponse:
		clearHeader(r.Header)
		for _, op := range r.Responses {
			switch x := op.Response.(type) {
			case *pb.ResponseOp_ResponseRange:
				normalize(x.ResponseRange)
			case *pb.ResponseOp_ResponsePut:
				normalize(x.ResponsePut)
			case *pb.ResponseOp_ResponseDeleteRange:
				normalize(x.ResponseDeleteRange)
			case *pb.ResponseOp_ResponseTxn:
				normalize(x.ResponseTxn)
			}
		}
	case *pb.CompactionResponse:
		clearHeader(r.Header)
	case *pb.LeaseGrantResponse:
		clearHeader(r.Header)
	case *pb.LeaseRevokeResponse:
		clearHeader(r.Header)
	case *pb.LeaseTimeToLiveResponse:
		clearHeader(r.Header)
		// Remaining TTL: anything that has counted down by less than a
		// minute from the granted TTL counts as the granted TTL.
		if r.GrantedTTL > 0 && r.TTL > r.GrantedTTL-60 && r.TTL <= r.GrantedTTL {
			r.TTL = r.GrantedTTL
		}
		slices.SortFunc(r.Keys, bytes.Compare)
	case *pb.LeaseLeasesResponse:
		clearHeader(r.Header)
		slices.SortFunc(r.Leases, func(a, b *pb.LeaseStatus) int {
			switch {
			case a.ID < b.ID:
				return -1
			case a.ID > b.ID:
				return 1
			}
			return 0
		})
	}
}

func clearHeader(h *pb.ResponseHeader) {
	if h != nil {
		h.ClusterId, h.MemberId, h.RaftTerm = 0, 0, 0
	}
}

// same reports whether two results are indistinguishable to a client.
func same(a, b result) bool {
	if a.code != b.code || a.msg != b.msg || (a.resp == nil) != (b.resp == nil) {
		return false
	}
	if a.resp == nil {
		return true
	}
	if fmt.Sprintf("%T", a.resp) != fmt.Sprintf("%T", b.resp) {
		return false
	}
	ab, errA := deterministic.Marshal(a.resp)
	bb, errB := deterministic.Marshal(b.resp)
	return errA == nil && errB == nil && bytes.Equal(ab, bb)
}

// deterministic encodes messages the same way every time, so that equal
// messages give equal bytes.
var deterministic = proto.MarshalOptions{Deterministic: true}

// describe renders a request for a failure message, cut short when huge.
func describe(m message) string {
	s := fmt.Sprintf("%T %s", m, prototext.MarshalOptions{}.Format(m))
	const max = 3000
	if len(s) > max {
		s = s[:max] + fmt.Sprintf("... (%d more bytes)", len(s)-max)
	}
	return strings.TrimSpace(s)
}
