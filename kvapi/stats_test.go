package kvapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestStatsCountOperations checks that Stats counts operations as etcd's
// etcd_mvcc_*_total do: ranges served (in txns too), puts and deletes
// applied, txns of more than one operation.
func TestStatsCountOperations(t *testing.T) {
	ts := newLeaseTestServer(t, LeaseConfig{})
	ctx := leaseTestCtx(t)
	kv := pb.NewKVClient(ts.conn)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(kv.Put(ctx, &pb.PutRequest{Key: []byte("a"), Value: []byte("1")}))
	must(kv.Put(ctx, &pb.PutRequest{Key: []byte("b"), Value: []byte("2")}))
	must(kv.Range(ctx, &pb.RangeRequest{Key: []byte("a")}))
	must(kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("b")}))
	// A write txn of three operations: one txn, one more of each kind.
	must(kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("c")}}},
		{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("c")}}},
		{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("a")}}},
	}}))
	// A read-only txn of one range: counts its range, not as a txn.
	must(kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("c")}}},
	}}))
	// A failed put counts nothing.
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("x"), Lease: 999}); err == nil {
		t.Fatal("put with an unknown lease succeeded")
	}
	must(ts.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 7, TTL: 60}))
	ka, err := ts.lease.LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: 7}); err != nil {
		t.Fatal(err)
	}
	if _, err := ka.Recv(); err != nil {
		t.Fatal(err)
	}
	must(ts.lease.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 7}))

	got := ts.srv.Stats()
	want := Stats{Ranges: 3, Puts: 3, Deletes: 2, Txns: 1, LeasesGranted: 1, LeasesRevoked: 1, LeasesRenewed: 1}
	if got != want {
		t.Fatalf("Stats() = %+v\nwant      %+v", got, want)
	}
}

// TestStatsWatchGauges follows the watch gauges through creates, a
// watcher falling behind, cancels and the end of a stream.
func TestStatsWatchGauges(t *testing.T) {
	ts := newTestServer(t, Config{})
	watchPut(t, ts, "k", "1") // 2
	wantGauges := func(streams, watchers, slow int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			st := ts.srv.Stats()
			if st.WatchStreams == streams && st.Watchers == watchers && st.SlowWatchers == slow {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("streams/watchers/slow = %d/%d/%d, want %d/%d/%d", st.WatchStreams, st.Watchers, st.SlowWatchers, streams, watchers, slow)
			}
			time.Sleep(time.Millisecond) // the stream goroutines update the gauges
		}
	}
	w := openRawWatch(t, ts.conn)
	a := w.created(&pb.WatchCreateRequest{Key: []byte("k")})
	w.created(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("z")})
	wantGauges(1, 2, 0)
	// A watcher from the past is unsynced until it has caught up.
	w2 := openRawWatch(t, ts.conn)
	w2.created(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 1})
	if r := w2.recv(); len(r.Events) != 1 {
		t.Fatalf("catch-up: %v", r)
	}
	wantGauges(2, 3, 0)
	watchPut(t, ts, "k", "2")
	for range 2 {
		if r := w.recv(); len(r.Events) != 1 {
			t.Fatalf("event: %v", r)
		}
	}
	if r := w2.recv(); len(r.Events) != 1 {
		t.Fatalf("event: %v", r)
	}
	if got := ts.srv.Stats().WatchEvents; got != 4 { // 1 caught up, then 2 + 1 live
		t.Fatalf("WatchEvents = %d, want 4", got)
	}
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: a}}})
	wantGauges(2, 2, 0)
	w2.cancel()
	wantGauges(1, 1, 0)
}

// TestRangeStreamChunks checks the chunk sizes, the last chunk's header,
// more and count, and that the stream reads the revision of its start.
func TestRangeStreamChunks(t *testing.T) {
	ts := newTestServer(t, Config{})
	kv := pb.NewKVClient(ts.conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 45 {
		watchPut(t, ts, fmt.Sprintf("k%02d", i), "v")
	}
	read := func(r *pb.RangeRequest) ([]*pb.RangeResponse, error) {
		st, err := kv.RangeStream(ctx, r)
		if err != nil {
			return nil, err
		}
		var out []*pb.RangeResponse
		for {
			resp, err := st.Recv()
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if err != nil {
				return out, err
			}
			out = append(out, resp.RangeResponse)
			if len(out) == 1 {
				watchPut(t, ts, "k00", "written during the stream")
			}
		}
	}
	chunks, err := read(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Limit: 40})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, c := range chunks {
		sizes = append(sizes, len(c.Kvs))
	}
	if fmt.Sprint(sizes) != "[10 20 10]" {
		t.Fatalf("chunk sizes %v, want [10 20 10] (10, doubled, then up to the limit)", sizes)
	}
	last := chunks[2]
	if last.Header == nil || last.Header.Revision != 46 || last.Header.MemberId != 0x31 || !last.More || last.Count != 45 {
		t.Fatalf("last chunk: header %v more %v count %d; want revision 46, more, count 45", last.Header, last.More, last.Count)
	}
	for _, c := range chunks[:2] {
		if c.Header != nil || c.More || c.Count != 0 {
			t.Fatalf("a chunk before the last carries %v %v %d", c.Header, c.More, c.Count)
		}
	}
	if string(chunks[0].Kvs[0].Value) != "v" {
		t.Fatalf("the stream saw a write made after it started: %q", chunks[0].Kvs[0].Value)
	}
	_, err = read(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), SortOrder: pb.RangeRequest_DESCEND})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("descending order: %v, want Unimplemented", err)
	}
}
