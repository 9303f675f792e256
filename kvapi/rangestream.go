package kvapi

import (
	"bytes"
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// RangeStream sizing, as etcd 3.7's: the first chunk holds this many keys;
// each next chunk doubles or halves the count to keep chunks between half
// and twice the request size limit.
const firstStreamChunk = 10

// RangeStream serves a range as a stream of chunks (etcd 3.7, clientv3's
// GetStream, etcdctl get --stream), with etcd's semantics:
//   - sort orders other than by key ascending, and revision filters, are
//     refused with Unimplemented, as etcd refuses them;
//   - a linearizable stream passes one read barrier, then every chunk reads
//     the revision current at the first chunk (or the requested revision), so
//     writes during the stream are not seen;
//   - each chunk carries only key-values; the last one also carries the
//     header (revision: the store's revision at the first chunk), more and
//     count, so that merging every chunk gives Range's response;
//   - a count-only request is answered with one chunk.
func (s kvServer) RangeStream(r *pb.RangeRequest, rs pb.KV_RangeStreamServer) error {
	ctx := rs.Context()
	if err := mvcc.CheckRange(r); err != nil {
		return togRPCError(ctx, err)
	}
	if !defaultOrdering(r) {
		return status.Error(codes.Unimplemented, "RangeStream does not support custom sort orders")
	}
	if r.MinModRevision != 0 || r.MaxModRevision != 0 || r.MinCreateRevision != 0 || r.MaxCreateRevision != 0 {
		return status.Error(codes.Unimplemented, "RangeStream does not support revision filters")
	}
	if !r.Serializable {
		if err := s.readBarrier(ctx); err != nil {
			return err
		}
	}
	s.ops.ranges.Add(1)
	if r.CountOnly {
		resp, err := s.store.Range(r)
		if err != nil {
			return togRPCError(ctx, err)
		}
		out := &pb.RangeResponse{Header: s.header(resp.Header.Revision), Count: resp.Count}
		return rs.Send(&pb.RangeStreamResponse{RangeResponse: out})
	}

	if r.SortTarget == pb.RangeRequest_KEY {
		// Ascending key order is the store's own: read chunks without a
		// sort. (A sort target with order NONE sorts each chunk by that
		// target, ascending, as in etcd.)
		r.SortOrder = pb.RangeRequest_NONE
	}
	total := r.Limit
	if total == 0 {
		total = math.MaxInt64
	}
	r.Limit = min(firstStreamChunk, total)
	var count, headerRev int64
	for {
		if err := ctx.Err(); err != nil {
			return togRPCError(ctx, err)
		}
		resp, err := s.store.RangeChunk(r)
		if err != nil {
			return togRPCError(ctx, err)
		}
		if headerRev == 0 {
			// Every chunk reads at the revision of the first.
			headerRev = resp.Header.Revision
			if r.Revision == 0 {
				r.Revision = headerRev
			}
		}
		count += int64(len(resp.Kvs))
		var next []byte
		if resp.More {
			next = append(bytes.Clone(resp.Kvs[len(resp.Kvs)-1].Key), 0)
		}
		out := &pb.RangeResponse{Kvs: resp.Kvs}
		done := !resp.More || count == total
		if done {
			out.Header = s.header(headerRev)
			out.More = resp.More
			out.Count = count
			if resp.More {
				rest, err := s.store.Range(&pb.RangeRequest{Key: next, RangeEnd: r.RangeEnd, Revision: r.Revision, CountOnly: true})
				if err != nil {
					return togRPCError(ctx, err)
				}
				out.Count += rest.Count
			}
		}
		if err := rs.Send(&pb.RangeStreamResponse{RangeResponse: out}); err != nil {
			return err
		}
		if done {
			return nil
		}
		r.Key = next
		r.Limit = min(nextChunkLimit(r.Limit, proto.Size(resp), s.cfg.MaxRequestBytes), total-count)
	}
}

// defaultOrdering reports whether r asks for key order: no sort, or by key
// ascending.
func defaultOrdering(r *pb.RangeRequest) bool {
	return r.SortOrder == pb.RangeRequest_NONE ||
		r.SortTarget == pb.RangeRequest_KEY && r.SortOrder == pb.RangeRequest_ASCEND
}

// nextChunkLimit doubles the key count of a chunk smaller than half the
// target size and halves that of one larger than twice it, never below 1.
func nextChunkLimit(limit int64, size, target int) int64 {
	switch {
	case size < target/2:
		limit *= 2
	case size > target*2:
		limit /= 2
	}
	return max(limit, 1)
}
