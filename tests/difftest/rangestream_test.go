package difftest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// streamResult is every chunk of one RangeStream, then its error (or OK).
type streamResult struct {
	chunks []*pb.RangeResponse
	code   codes.Code
	msg    string
}

func (s streamResult) String() string {
	var b strings.Builder
	for i, c := range s.chunks {
		fmt.Fprintf(&b, "\n  chunk %d: %d kvs, more=%v count=%d header=%v first=%q",
			i, len(c.Kvs), c.More, c.Count, c.Header, firstKey(c))
	}
	fmt.Fprintf(&b, "\n  end: %v %q", s.code, s.msg)
	return b.String()
}

func firstKey(r *pb.RangeResponse) string {
	if len(r.Kvs) == 0 {
		return ""
	}
	return string(r.Kvs[0].Key)
}

// rangeStream reads a whole RangeStream from a target.
func rangeStream(ctx context.Context, tg *target, req *pb.RangeRequest) streamResult {
	var out streamResult
	// A negative limit reads everything into one chunk: let it through.
	st, err := tg.kv.RangeStream(ctx, proto.Clone(req).(*pb.RangeRequest), grpc.MaxCallRecvMsgSize(math.MaxInt32))
	for err == nil {
		var resp *pb.RangeStreamResponse
		resp, err = st.Recv()
		if err == nil {
			r := resp.RangeResponse
			if r == nil {
				r = &pb.RangeResponse{}
			}
			normalize(r)
			out.chunks = append(out.chunks, r)
		}
	}
	if !errors.Is(err, io.EOF) {
		s := status.Convert(err)
		out.code, out.msg = s.Code(), s.Message()
	}
	return out
}

func sameStream(a, b streamResult) bool {
	if a.code != b.code || a.msg != b.msg || len(a.chunks) != len(b.chunks) {
		return false
	}
	for i := range a.chunks {
		if !same(result{resp: a.chunks[i]}, result{resp: b.chunks[i]}) {
			return false
		}
	}
	return true
}

// TestRangeStream compares etcd 3.7's KV.RangeStream with meshkv's, chunk by
// chunk: chunk sizes (the first chunk's 10 keys, then doubling towards the
// request size limit), what the last chunk carries (header, more, count),
// the revision every chunk reads, and the refusals.
func TestRangeStream(t *testing.T) {
	r := newRunner(t)
	r.label = "RangeStream"
	// 600 keys with values that grow, so that chunks double, and a few
	// large ones, so that they halve again.
	for i := range 600 {
		v := strings.Repeat("v", 1+i*4)
		if i%97 == 0 {
			v = strings.Repeat("L", 900*1024)
		}
		r.ok(&pb.PutRequest{Key: fmt.Appendf(nil, "k/%04d", i), Value: []byte(v)})
	}
	r.ok(&pb.PutRequest{Key: []byte("single"), Value: []byte("one")})
	mid := rev(r.ok(&pb.PutRequest{Key: []byte("k/0001"), Value: []byte("rewritten")}))
	r.ok(&pb.DeleteRangeRequest{Key: []byte("k/0002")})
	compactTo := rev(r.ok(&pb.PutRequest{Key: []byte("k/0003"), Value: []byte("again")}))

	all := func() *pb.RangeRequest { return &pb.RangeRequest{Key: []byte("k/"), RangeEnd: []byte("k0")} }
	with := func(f func(*pb.RangeRequest)) *pb.RangeRequest { q := all(); f(q); return q }
	cases := []struct {
		name string
		req  *pb.RangeRequest
		code codes.Code // what etcd answers at the end of the stream
	}{
		{"whole prefix", all(), codes.OK},
		{"serializable", with(func(q *pb.RangeRequest) { q.Serializable = true }), codes.OK},
		{"limit below the first chunk", with(func(q *pb.RangeRequest) { q.Limit = 7 }), codes.OK},
		{"limit across chunks", with(func(q *pb.RangeRequest) { q.Limit = 250 }), codes.OK},
		{"limit equal to the keys", with(func(q *pb.RangeRequest) { q.Limit = 599 }), codes.OK},
		{"negative limit", with(func(q *pb.RangeRequest) { q.Limit = -1 }), codes.OK},
		{"keys only", with(func(q *pb.RangeRequest) { q.KeysOnly = true }), codes.OK},
		{"count only", with(func(q *pb.RangeRequest) { q.CountOnly = true; q.Limit = 3 }), codes.OK},
		{"at an older revision", with(func(q *pb.RangeRequest) { q.Revision = mid - 1 }), codes.OK},
		{"sort by key ascending", with(func(q *pb.RangeRequest) { q.SortOrder = pb.RangeRequest_ASCEND }), codes.OK},
		{"sort target without order", with(func(q *pb.RangeRequest) { q.SortTarget = pb.RangeRequest_VALUE; q.Limit = 30 }), codes.OK},
		{"sort descending", with(func(q *pb.RangeRequest) { q.SortOrder = pb.RangeRequest_DESCEND }), codes.Unimplemented},
		{"sort by version", with(func(q *pb.RangeRequest) { q.SortOrder = pb.RangeRequest_ASCEND; q.SortTarget = pb.RangeRequest_VERSION }), codes.Unimplemented},
		{"revision filter", with(func(q *pb.RangeRequest) { q.MinModRevision = 3 }), codes.Unimplemented},
		{"future revision", with(func(q *pb.RangeRequest) { q.Revision = compactTo + 100 }), codes.OutOfRange},
		{"bad sort order", with(func(q *pb.RangeRequest) { q.SortOrder = 9 }), codes.InvalidArgument},
		{"empty key", &pb.RangeRequest{}, codes.InvalidArgument},
		{"single key", &pb.RangeRequest{Key: []byte("single")}, codes.OK},
		{"missing key", &pb.RangeRequest{Key: []byte("absent")}, codes.OK},
		{"empty range", &pb.RangeRequest{Key: []byte("x"), RangeEnd: []byte("y")}, codes.OK},
	}
	compacted := false
	run := func(name string, req *pb.RangeRequest, code codes.Code) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		a, b := rangeStream(ctx, r.ref, req), rangeStream(ctx, r.sut, req)
		if a.code != code {
			t.Fatalf("%s: etcd ended with %v %q, the test expects %v:%s", name, a.code, a.msg, code, a)
		}
		if !sameStream(a, b) {
			t.Fatalf("%s: request %s\netcd:%s\nmeshkv:%s", name, describe(req), a, b)
		}
		if code == codes.OK && !req.CountOnly && req.Limit == 0 && len(a.chunks) < 2 && !compacted && len(req.RangeEnd) > 0 && string(req.Key) == "k/" {
			t.Fatalf("%s: one chunk only; the test data should need several:%s", name, a)
		}
		t.Logf("%s: %d chunks match (%v)", name, len(a.chunks), a.code)
	}
	for _, c := range cases {
		run(c.name, c.req, c.code)
	}
	r.ok(&pb.CompactionRequest{Revision: compactTo})
	compacted = true
	run("compacted revision", with(func(q *pb.RangeRequest) { q.Revision = mid }), codes.OutOfRange)
	run("after compaction", all(), codes.OK)
}
