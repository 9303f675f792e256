package kvapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// watchWaitFor polls cond until it holds, failing the test after a generous
// deadline.
func watchWaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// rawWatch is a raw Watch stream with helpers for exact-field checks.
type rawWatch struct {
	t      testing.TB
	stream pb.Watch_WatchClient
	cancel context.CancelFunc
}

func openRawWatch(t testing.TB, conn *grpc.ClientConn) *rawWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return &rawWatch{t: t, stream: stream, cancel: cancel}
}

func (r *rawWatch) send(req *pb.WatchRequest) {
	r.t.Helper()
	if err := r.stream.Send(req); err != nil {
		r.t.Fatalf("send %v: %v", req, err)
	}
}

func (r *rawWatch) create(c *pb.WatchCreateRequest) {
	r.t.Helper()
	r.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: c}})
}

func (r *rawWatch) cancelWatch(id int64) {
	r.t.Helper()
	r.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}})
}

func (r *rawWatch) progress() {
	r.t.Helper()
	r.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
}

// recv returns the next response, failing on error or after a deadline.
func (r *rawWatch) recv() *pb.WatchResponse {
	r.t.Helper()
	type res struct {
		resp *pb.WatchResponse
		err  error
	}
	c := make(chan res, 1)
	go func() {
		resp, err := r.stream.Recv()
		c <- res{resp, err}
	}()
	select {
	case x := <-c:
		if x.err != nil {
			r.t.Fatalf("recv: %v", x.err)
		}
		return x.resp
	case <-time.After(20 * time.Second):
		r.t.Fatal("recv: no response within 20s")
	}
	return nil
}

// created creates a watcher and returns its id, checking the created
// response.
func (r *rawWatch) created(c *pb.WatchCreateRequest) int64 {
	r.t.Helper()
	r.create(c)
	resp := r.recv()
	if !resp.Created || resp.Canceled {
		r.t.Fatalf("create %v: got %v, want created", c, resp)
	}
	return resp.WatchId
}

// eventsUntil receives event responses for watch id until one carries an
// event at revision rev or later, and returns all events in order.
func (r *rawWatch) eventsUntil(id, rev int64) []*mvccpb.Event {
	r.t.Helper()
	var evs []*mvccpb.Event
	for len(evs) == 0 || evs[len(evs)-1].Kv.ModRevision < rev {
		resp := r.recv()
		if resp.WatchId != id || resp.Canceled || resp.Created || len(resp.Events) == 0 {
			r.t.Fatalf("waiting for events of watch %d up to revision %d: got %v", id, rev, resp)
		}
		evs = append(evs, resp.Events...)
	}
	return evs
}

func watchPut(t testing.TB, ts *testServer, key, val string) int64 {
	t.Helper()
	resp, err := ts.cli.Put(context.Background(), key, val)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func watchDel(t testing.TB, ts *testServer, key string, opts ...clientv3.OpOption) int64 {
	t.Helper()
	resp, err := ts.cli.Delete(context.Background(), key, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// watchEvString renders events compactly for comparisons.
func watchEvString(evs []*mvccpb.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%s %s@%d", e.Type, e.Kv.Key, e.Kv.ModRevision)
		if e.Type == mvccpb.PUT {
			fmt.Fprintf(&b, "=%s", e.Kv.Value)
		}
		if e.PrevKv != nil {
			fmt.Fprintf(&b, "(prev %s@%d=%s)", e.PrevKv.Key, e.PrevKv.ModRevision, e.PrevKv.Value)
		}
		b.WriteString("; ")
	}
	return b.String()
}

// watchClientEvents reads n events from a clientv3 watch channel.
func watchClientEvents(t testing.TB, wch clientv3.WatchChan, n int) []*mvccpb.Event {
	t.Helper()
	var evs []*mvccpb.Event
	timeout := time.After(20 * time.Second)
	for len(evs) < n {
		select {
		case wr, ok := <-wch:
			if !ok {
				t.Fatalf("watch channel closed after %d of %d events", len(evs), n)
			}
			if err := wr.Err(); err != nil {
				t.Fatalf("watch error after %d events: %v", len(evs), err)
			}
			for _, e := range wr.Events {
				evs = append(evs, (*mvccpb.Event)(e))
			}
		case <-timeout:
			t.Fatalf("got %d of %d events: %s", len(evs), n, watchEvString(evs))
		}
	}
	return evs
}

func TestWatchKeyRangePrefixFromKey(t *testing.T) {
	ts := newTestServer(t, Config{})
	ctx := t.Context()
	key := ts.cli.Watch(ctx, "b")
	rng := ts.cli.Watch(ctx, "b", clientv3.WithRange("d"))
	prefix := ts.cli.Watch(ctx, "b", clientv3.WithPrefix())
	fromKey := ts.cli.Watch(ctx, "c", clientv3.WithFromKey())
	all := ts.cli.Watch(ctx, "", clientv3.WithPrefix())
	// clientv3 returns the channel before the watcher exists; make sure all
	// are created by waiting for a progress response on their stream.
	if err := ts.cli.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	watchWaitFor(t, "five watchers", func() bool { return ts.srv.watch.stats().synced == 5 })

	watchPut(t, ts, "a", "1")     // 2: all
	watchPut(t, ts, "b", "1")     // 3: key rng prefix all
	watchPut(t, ts, "bb", "1")    // 4: rng prefix all
	watchPut(t, ts, "c", "1")     // 5: rng fromKey all
	watchPut(t, ts, "d", "1")     // 6: fromKey all
	watchDel(t, ts, "b")          // 7: key rng prefix all
	watchPut(t, ts, "ba", "2")    // 8: rng prefix all
	watchPut(t, ts, "zz", "1")    // 9: fromKey all
	watchDel(t, ts, "bb")         // 10: rng prefix all
	watchPut(t, ts, "b\xff", "x") // 11: rng prefix all

	for _, tc := range []struct {
		name string
		wch  clientv3.WatchChan
		want []int64
	}{
		{"key", key, []int64{3, 7}},
		{"range", rng, []int64{3, 4, 5, 7, 8, 10, 11}},
		{"prefix", prefix, []int64{3, 4, 7, 8, 10, 11}},
		{"fromKey", fromKey, []int64{5, 6, 9}},
		{"all", all, []int64{2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
	} {
		evs := watchClientEvents(t, tc.wch, len(tc.want))
		var got []int64
		for _, e := range evs {
			got = append(got, e.Kv.ModRevision)
			if e.PrevKv != nil {
				t.Errorf("%s: prev_kv %v sent without being asked", tc.name, e.PrevKv)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: revisions %v, want %v (%s)", tc.name, got, tc.want, watchEvString(evs))
		}
	}
}

func TestWatchEventShapeAndPrevKV(t *testing.T) {
	ts := newTestServer(t, Config{})
	watchPut(t, ts, "k", "v1")     // 2
	watchPut(t, ts, "k", "v2")     // 3
	delRev := watchDel(t, ts, "k") // 4
	watchPut(t, ts, "k", "v3")     // 5

	w := openRawWatch(t, ts.conn)
	plain := w.created(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 2})
	evs := w.eventsUntil(plain, 5)
	if got, want := watchEvString(evs), "PUT k@2=v1; PUT k@3=v2; DELETE k@4; PUT k@5=v3; "; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	// A DELETE carries only the key and its revision.
	want := &mvccpb.KeyValue{Key: []byte("k"), ModRevision: delRev}
	if d := evs[2]; d.Kv.String() != want.String() || d.PrevKv != nil {
		t.Fatalf("delete event %v, want kv %v and no prev_kv", d, want)
	}
	if e := evs[1].Kv; e.CreateRevision != 2 || e.Version != 2 {
		t.Fatalf("put kv %v, want create revision 2 version 2", e)
	}

	withPrev := w.created(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 2, PrevKv: true})
	evs = w.eventsUntil(withPrev, 5)
	if got, want := watchEvString(evs), "PUT k@2=v1; PUT k@3=v2(prev k@2=v1); DELETE k@4(prev k@3=v2); PUT k@5=v3; "; got != want {
		t.Fatalf("prev_kv events %q, want %q", got, want)
	}

	// Live events have the same shape.
	watchPut(t, ts, "k", "v4") // 6
	for _, id := range []int64{plain, withPrev} {
		evs := w.eventsUntil(id, 6)
		want := "PUT k@6=v4; "
		if id == withPrev {
			want = "PUT k@6=v4(prev k@5=v3); "
		}
		if got := watchEvString(evs); got != want {
			t.Fatalf("live events of %d: %q, want %q", id, got, want)
		}
	}
}

func TestWatchFilters(t *testing.T) {
	ts := newTestServer(t, Config{})
	w := openRawWatch(t, ts.conn)
	noPut := w.created(&pb.WatchCreateRequest{Key: []byte("f"), Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}})
	noDel := w.created(&pb.WatchCreateRequest{Key: []byte("f"), Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}})
	watchPut(t, ts, "f", "1") // 2
	watchDel(t, ts, "f")      // 3
	watchPut(t, ts, "f", "2") // 4
	got := map[int64]string{}
	for len(got[noPut]) == 0 || !strings.Contains(got[noDel], "@4") {
		r := w.recv()
		got[r.WatchId] += watchEvString(r.Events)
	}
	if got[noPut] != "DELETE f@3; " || got[noDel] != "PUT f@2=1; PUT f@4=2; " {
		t.Fatalf("NOPUT got %q, NODELETE got %q", got[noPut], got[noDel])
	}
}

func TestWatchHistoryReplayAndFutureStart(t *testing.T) {
	ts := newTestServer(t, Config{})
	ctx := t.Context()
	for i := range 20 {
		watchPut(t, ts, fmt.Sprintf("h/%02d", i%7), fmt.Sprint(i)) // revisions 2..21
	}
	// From an old revision: everything from it, in order, then live.
	wch := ts.cli.Watch(ctx, "h/", clientv3.WithPrefix(), clientv3.WithRev(5))
	evs := watchClientEvents(t, wch, 17)
	for i, e := range evs {
		if e.Kv.ModRevision != int64(5+i) || string(e.Kv.Value) != fmt.Sprint(3+i) {
			t.Fatalf("event %d = %v, want revision %d value %d", i, e, 5+i, 3+i)
		}
	}
	// From a future revision: nothing before it.
	future := ts.cli.Watch(ctx, "h/", clientv3.WithPrefix(), clientv3.WithRev(25))
	for i := range 6 {
		watchPut(t, ts, "h/f", fmt.Sprint(i)) // revisions 22..27
	}
	evs = watchClientEvents(t, future, 3)
	if evs[0].Kv.ModRevision != 25 || evs[2].Kv.ModRevision != 27 {
		t.Fatalf("future watch events %s, want revisions 25..27", watchEvString(evs))
	}
	if evs = watchClientEvents(t, wch, 6); evs[0].Kv.ModRevision != 22 || evs[5].Kv.ModRevision != 27 {
		t.Fatalf("live events after replay %s, want 22..27", watchEvString(evs))
	}
}

func TestWatchCancel(t *testing.T) {
	ts := newTestServer(t, Config{})
	w := openRawWatch(t, ts.conn)
	a := w.created(&pb.WatchCreateRequest{Key: []byte("c")})
	watchPut(t, ts, "c", "1") // 2
	w.eventsUntil(a, 2)
	w.cancelWatch(a)
	resp := w.recv()
	if resp.WatchId != a || !resp.Canceled || resp.Created || len(resp.Events) != 0 || resp.Header.Revision != 2 || resp.CancelReason != "" {
		t.Fatalf("cancel response %v, want watch %d canceled at revision 2", resp, a)
	}
	w.cancelWatch(a)          // unknown now: no response
	w.cancelWatch(999)        // never existed: no response
	watchPut(t, ts, "c", "2") // 3: must not reach the canceled watcher
	b := w.created(&pb.WatchCreateRequest{Key: []byte("c")})
	if b == a {
		// Auto ids are not reused while in use, but may be after a cancel;
		// this stream's next auto id is a+1.
		t.Fatalf("new watch id %d equals canceled id", b)
	}
	watchPut(t, ts, "c", "3") // 4
	if evs := w.eventsUntil(b, 4); watchEvString(evs) != "PUT c@4=3; " {
		t.Fatalf("events after cancel: %s", watchEvString(evs))
	}
	if st := ts.srv.watch.stats(); st.synced != 1 {
		t.Fatalf("synced watchers = %d, want 1", st.synced)
	}
}

func TestWatchCompactedStart(t *testing.T) {
	ts := newTestServer(t, Config{})
	for i := range 5 {
		watchPut(t, ts, "x", fmt.Sprint(i)) // 2..6
	}
	if _, err := ts.cli.Compact(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	w := openRawWatch(t, ts.conn)
	w.create(&pb.WatchCreateRequest{Key: []byte("x"), StartRevision: 3})
	created := w.recv()
	if !created.Created || created.Canceled || created.WatchId != 0 || created.Header.Revision != 6 {
		t.Fatalf("created response %v", created)
	}
	resp := w.recv()
	want := &pb.WatchResponse{
		Header:          &pb.ResponseHeader{ClusterId: 0xc1, MemberId: 0x31, RaftTerm: 2, Revision: 0},
		WatchId:         0,
		Canceled:        true,
		CompactRevision: 4,
	}
	if resp.String() != want.String() {
		t.Fatalf("compacted response\n got %v\nwant %v", resp, want)
	}
	// From exactly the compact revision works.
	id := w.created(&pb.WatchCreateRequest{Key: []byte("x"), StartRevision: 4})
	if evs := w.eventsUntil(id, 6); watchEvString(evs) != "PUT x@4=2; PUT x@5=3; PUT x@6=4; " {
		t.Fatalf("events from compact revision: %s", watchEvString(evs))
	}
	// clientv3 reports it as ErrCompacted.
	wch := ts.cli.Watch(t.Context(), "x", clientv3.WithRev(2))
	select {
	case wr := <-wch:
		if !errors.Is(wr.Err(), rpctypes.ErrCompacted) || wr.CompactRevision != 4 {
			t.Fatalf("clientv3 watch below compaction: err %v compact %d", wr.Err(), wr.CompactRevision)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no response to a compacted clientv3 watch")
	}
}

func TestWatchBadCreates(t *testing.T) {
	ts := newTestServer(t, Config{})
	watchPut(t, ts, "a", "1") // 2
	w := openRawWatch(t, ts.conn)
	first := w.created(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 7})
	if first != 7 {
		t.Fatalf("explicit id: got %d, want 7", first)
	}
	for _, tc := range []struct {
		name   string
		req    *pb.WatchCreateRequest
		reason string
	}{
		{"key equals range end", &pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("b")}, "mvcc: watcher range is empty"},
		{"key above range end", &pb.WatchCreateRequest{Key: []byte("c"), RangeEnd: []byte("b")}, "mvcc: watcher range is empty"},
		{"negative start revision", &pb.WatchCreateRequest{Key: []byte("a"), StartRevision: -1}, "etcdserver: mvcc: required revision has been compacted"},
		{"duplicate watch id", &pb.WatchCreateRequest{Key: []byte("b"), WatchId: 7}, "mvcc: duplicate watch ID provided on the WatchStream"},
	} {
		w.create(tc.req)
		got := w.recv()
		want := &pb.WatchResponse{
			Header:       &pb.ResponseHeader{ClusterId: 0xc1, MemberId: 0x31, RaftTerm: 2, Revision: 2},
			WatchId:      -1,
			Created:      true,
			Canceled:     true,
			CancelReason: tc.reason,
		}
		if got.String() != want.String() {
			t.Errorf("%s:\n got %v\nwant %v", tc.name, got, want)
		}
	}
	// The stream still works, and auto ids skip the explicit one in use.
	for want := range int64(9) {
		if want == 7 {
			continue
		}
		if id := w.created(&pb.WatchCreateRequest{Key: []byte("a")}); id != want {
			t.Fatalf("auto id %d, want %d", id, want)
		}
	}
	// An empty key with range end "\x00" watches every key.
	all := w.created(&pb.WatchCreateRequest{RangeEnd: []byte{0}})
	watchPut(t, ts, "\x00", "z") // 3
	if evs := w.eventsUntil(all, 3); watchEvString(evs) != "PUT \x00@3=z; " {
		t.Fatalf("all-keys watcher got %q", watchEvString(evs))
	}
}

func TestWatchProgressRequest(t *testing.T) {
	ts := newTestServer(t, Config{})
	watchPut(t, ts, "p", "1") // 2
	w := openRawWatch(t, ts.conn)
	// No watchers: no answer (the next response is the create's).
	w.progress()
	id := w.created(&pb.WatchCreateRequest{Key: []byte("p"), StartRevision: 2})
	if evs := w.eventsUntil(id, 2); len(evs) != 1 {
		t.Fatalf("events %s", watchEvString(evs))
	}
	watchPut(t, ts, "other", "1") // 3
	w.progress()
	resp := w.recv()
	want := &pb.WatchResponse{Header: &pb.ResponseHeader{ClusterId: 0xc1, MemberId: 0x31, RaftTerm: 2, Revision: 3}, WatchId: -1}
	if resp.String() != want.String() {
		t.Fatalf("progress response\n got %v\nwant %v", resp, want)
	}
	// A watcher that has not reached its start revision: no answer.
	w.created(&pb.WatchCreateRequest{Key: []byte("p"), StartRevision: 10})
	w.progress()
	last := w.created(&pb.WatchCreateRequest{Key: []byte("q")})
	if last != 2 {
		t.Fatalf("third watcher id %d, want 2", last)
	}
	// Events buffered before a progress request come before its answer.
	watchPut(t, ts, "p", "2") // 4
	w.cancelWatch(1)
	if r := w.recv(); r.WatchId != id || len(r.Events) != 1 || r.Events[0].Kv.ModRevision != 4 {
		t.Fatalf("want event of revision 4 for watch %d first, got %v", id, r)
	}
	if r := w.recv(); r.WatchId != 1 || !r.Canceled {
		t.Fatalf("want cancel of watch 1, got %v", r)
	}
	w.progress()
	if r := w.recv(); r.WatchId != -1 || r.Header.Revision != 4 || len(r.Events) != 0 {
		t.Fatalf("progress response %v, want revision 4", r)
	}
	// clientv3 delivers it as a progress notification.
	wch := ts.cli.Watch(t.Context(), "p")
	if err := ts.cli.RequestProgress(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case wr := <-wch:
		if !wr.IsProgressNotify() || wr.Header.Revision != 4 {
			t.Fatalf("clientv3 progress: %+v", wr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no progress notification")
	}
}

func TestWatchProgressNotify(t *testing.T) {
	ts := newTestServer(t, Config{WatchProgressNotifyInterval: 20 * time.Millisecond})
	watchPut(t, ts, "n", "1") // 2
	w := openRawWatch(t, ts.conn)
	id := w.created(&pb.WatchCreateRequest{Key: []byte("n"), ProgressNotify: true})
	w.created(&pb.WatchCreateRequest{Key: []byte("m")}) // did not ask
	watchPut(t, ts, "other", "1")                       // 3
	for {
		r := w.recv()
		if r.WatchId != id || len(r.Events) != 0 || r.Canceled || r.Created {
			t.Fatalf("unexpected response %v", r)
		}
		if r.Header.Revision == 3 {
			break
		}
		if r.Header.Revision != 2 {
			t.Fatalf("progress notification at revision %d, want 2 or 3", r.Header.Revision)
		}
	}
}

// TestWatchFragment writes a txn whose watch response (with previous
// values) is above the fragment limit.
func TestWatchFragment(t *testing.T) {
	ts := newTestServer(t, Config{})
	const n = 100
	val := func(c byte) string { return strings.Repeat(string(c), 12<<10) }
	var ops []clientv3.Op
	for i := range n {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("big/%03d", i), val('a')))
	}
	if _, err := ts.cli.Txn(context.Background()).Then(ops...).Commit(); err != nil { // 2
		t.Fatal(err)
	}
	w := openRawWatch(t, ts.conn)
	frag := w.created(&pb.WatchCreateRequest{Key: []byte("big/"), RangeEnd: []byte("big0"), PrevKv: true, Fragment: true})
	whole := w.created(&pb.WatchCreateRequest{Key: []byte("big/"), RangeEnd: []byte("big0"), PrevKv: true})
	cwch := ts.cli.Watch(t.Context(), "big/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithFragment())

	ops = ops[:0]
	for i := range n {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("big/%03d", i), val('b')))
	}
	if _, err := ts.cli.Txn(context.Background()).Then(ops...).Commit(); err != nil { // 3
		t.Fatal(err)
	}
	limit := DefaultMaxRequestBytes + GRPCOverheadBytes
	var fragments, events int
	gotWhole := false
	for !gotWhole || events < n {
		r := w.recv()
		switch r.WatchId {
		case frag:
			fragments++
			events += len(r.Events)
			if proto.Size(r) >= limit {
				t.Fatalf("fragment of %d bytes, limit %d", proto.Size(r), limit)
			}
			if last := events == n; r.Fragment == last {
				t.Fatalf("fragment %d (%d events so far) has Fragment=%v", fragments, events, r.Fragment)
			}
		case whole:
			if len(r.Events) != n || r.Fragment {
				t.Fatalf("unfragmented watcher got %d events (fragment=%v), want all %d at once", len(r.Events), r.Fragment, n)
			}
			gotWhole = true
		default:
			t.Fatalf("unexpected %v", r)
		}
	}
	if fragments < 2 {
		t.Fatalf("%d fragments, want at least 2", fragments)
	}
	evs := watchClientEvents(t, cwch, n)
	for i, e := range evs {
		if e.Kv.ModRevision != 3 || e.PrevKv == nil || string(e.Kv.Key) != fmt.Sprintf("big/%03d", i) {
			t.Fatalf("clientv3 fragment reassembly: event %d = %v", i, e.Kv.Key)
		}
	}
}

func TestWatchManyWatchersOneStream(t *testing.T) {
	ts := newTestServer(t, Config{})
	ctx := t.Context()
	const n = 1000
	wchs := make([]clientv3.WatchChan, n)
	for i := range n {
		wchs[i] = ts.cli.Watch(ctx, fmt.Sprintf("many/%04d", i))
	}
	same := make([]clientv3.WatchChan, n)
	for i := range n {
		same[i] = ts.cli.Watch(ctx, "many/same", clientv3.WithPrevKV())
	}
	if err := ts.cli.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	watchWaitFor(t, "2000 watchers", func() bool { return ts.srv.watch.stats().synced == 2*n })
	if st := ts.srv.watch.stats(); st.streams != 1 {
		t.Fatalf("%d streams, want clientv3 to share one", st.streams)
	}
	watchPut(t, ts, "many/same", "0")
	for i := range n {
		watchPut(t, ts, fmt.Sprintf("many/%04d", i), fmt.Sprint(i))
	}
	rev := watchPut(t, ts, "many/same", "1")
	for i := range n {
		evs := watchClientEvents(t, wchs[i], 1)
		if len(evs) != 1 || string(evs[0].Kv.Value) != fmt.Sprint(i) {
			t.Fatalf("watcher %d: %s", i, watchEvString(evs))
		}
		evs = watchClientEvents(t, same[i], 2)
		if len(evs) != 2 || evs[1].Kv.ModRevision != rev || string(evs[1].PrevKv.Value) != "0" {
			t.Fatalf("same-key watcher %d: %s", i, watchEvString(evs))
		}
	}
}

// watchConnServer is newTestServer's setup with control over connections: a
// raw connection whose receive windows are small and fixed (so a client that
// stops reading blocks the server's sends after little data), and a way to
// break every connection (so clients must reconnect).
type watchConnServer struct {
	*testServer
	slowConn *grpc.ClientConn

	mu    sync.Mutex
	conns []net.Conn
}

func newWatchConnServer(t testing.TB) *watchConnServer {
	t.Helper()
	store := mvcc.New()
	rep := &localReplicator{sm: NewStateMachine(store)}
	srv, err := NewServer(Config{}, store, rep, fixedCluster{})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(srv.ServerOptions()...)
	srv.Register(g)
	lis := bufconn.Listen(64 << 10)
	go g.Serve(lis)
	cs := &watchConnServer{}
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		c, err := lis.DialContext(ctx)
		if err == nil {
			cs.mu.Lock()
			cs.conns = append(cs.conns, c)
			cs.mu.Unlock()
		}
		return c, err
	}
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())
	slow, err := grpc.NewClient("passthrough:///kvapi-slow", grpc.WithContextDialer(dial), creds,
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///kvapi-conn", grpc.WithContextDialer(dial), creds)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"kvapi-conn:0"},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cli.Close()
		slow.Close()
		conn.Close()
		g.Stop()
	})
	cs.testServer = &testServer{store: store, srv: srv, conn: conn, cli: cli}
	cs.slowConn = slow
	return cs
}

// breakConns closes every client connection made so far.
func (cs *watchConnServer) breakConns() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, c := range cs.conns {
		c.Close()
	}
	cs.conns = nil
}

// TestWatchStalledClient: a client that never reads neither blocks writes
// nor makes the server buffer without bound; once it reads again it gets
// every event exactly once, in order.
func TestWatchStalledClient(t *testing.T) {
	ts := newWatchConnServer(t)
	slowConn := ts.slowConn
	h := ts.srv.watch
	kv := pb.NewKVClient(ts.conn)
	w := openRawWatch(t, slowConn)
	id := w.created(&pb.WatchCreateRequest{Key: []byte("s/"), RangeEnd: []byte("s0")})
	fast := openRawWatch(t, ts.conn)
	fastID := fast.created(&pb.WatchCreateRequest{Key: []byte("s/"), RangeEnd: []byte("s0")})

	val := bytes.Repeat([]byte("v"), 1024)
	var lastRev int64
	maxBuffered := 0
	n := 0
	// Write until the stalled watcher has fallen behind, then as much again.
	for extra := -1; extra != 0; extra-- {
		resp, err := kv.Put(context.Background(), &pb.PutRequest{Key: fmt.Appendf(nil, "s/%d", n%50), Value: val})
		if err != nil {
			t.Fatal(err)
		}
		lastRev = resp.Header.Revision
		n++
		st := h.stats()
		maxBuffered = max(maxBuffered, st.buffered)
		if extra < 0 && st.overflow > 0 {
			extra = 300
		}
		if n > 50000 {
			t.Fatalf("the stalled watcher never fell behind after %d writes (stats %+v)", n, st)
		}
		// The fast reader keeps up meanwhile.
		if n%500 == 0 {
			fast.eventsUntil(fastID, lastRev)
		}
	}
	if limit := watcherBufferLimit + 1 + 1024; maxBuffered > limit {
		t.Fatalf("buffered up to %d events, want at most %d", maxBuffered, limit)
	}
	t.Logf("%d writes; the stalled watcher fell behind; at most %d events buffered", n, maxBuffered)

	evs := w.eventsUntil(id, lastRev)
	if len(evs) != n {
		t.Fatalf("stalled watcher got %d events, want %d", len(evs), n)
	}
	for i, e := range evs {
		if e.Kv.ModRevision != int64(i+2) {
			t.Fatalf("event %d at revision %d, want %d", i, e.Kv.ModRevision, i+2)
		}
	}
	watchWaitFor(t, "the stalled watcher to rejoin", func() bool { return h.stats().synced == 2 })
	resp, err := kv.Put(context.Background(), &pb.PutRequest{Key: []byte("s/live"), Value: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if evs := w.eventsUntil(id, resp.Header.Revision); len(evs) != 1 {
		t.Fatalf("after rejoining: %s", watchEvString(evs))
	}
}

// watchTruth returns the events of [from, to] in the given range, from the
// store's history.
func watchTruth(t *testing.T, store *mvcc.Store, key, end []byte, from, to int64) []string {
	t.Helper()
	w := &watcher{key: key, end: end}
	var out []string
	err := store.History(from, to+1, func(rev int64, evs []mvccpb.Event) bool {
		for i := range evs {
			if w.contains(evs[i].Kv.Key) {
				shaped := w.appendShaped(nil, &evs[i])
				out = append(out, watchEvString([]*mvccpb.Event{&shaped[0]}))
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// watchFirstDiff returns the index of the first difference between a and b, or
// -1 if they are equal.
func watchFirstDiff(a, b []string) int {
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestWatchRandomizedExactlyOnce starts watchers at old revisions while
// writes continue, with tiny buffers so that watchers keep falling behind
// and rejoining, and checks each sees exactly the history of its range.
func TestWatchRandomizedExactlyOnce(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	ts := newTestServer(t, Config{})
	h := ts.srv.watch
	h.mu.Lock()
	h.watcherLimit, h.streamLimit = 3, 20
	h.mu.Unlock()

	keys := func(r *rand.Rand) string { return fmt.Sprintf("r/%02d", r.IntN(40)) }
	const writes = 1500
	done := make(chan int64)
	go func() {
		r := rand.New(rand.NewPCG(seed, 2))
		var last int64
		defer func() { done <- last }()
		for i := range writes {
			var err error
			var rev int64
			switch r.IntN(10) {
			case 0:
				resp, e := ts.cli.Delete(context.Background(), keys(r))
				err = e
				if e == nil {
					rev = resp.Header.Revision
				}
			case 1:
				resp, e := ts.cli.Txn(context.Background()).Then(
					clientv3.OpPut(keys(r), fmt.Sprint(i)), clientv3.OpDelete(keys(r)+"x"), clientv3.OpPut(keys(r)+"y", "t")).Commit()
				err = e
				if e == nil {
					rev = resp.Header.Revision
				}
			default:
				resp, e := ts.cli.Put(context.Background(), keys(r), fmt.Sprint(i))
				err = e
				if e == nil {
					rev = resp.Header.Revision
				}
			}
			if err != nil {
				t.Error(err)
				return
			}
			last = rev
		}
	}()

	type result struct {
		key, end []byte
		from     int64
		got      []string
	}
	var (
		mu      sync.Mutex
		results []*result
		wg      sync.WaitGroup
		stopc   = make(chan struct{})
	)
	for i := range 12 {
		// Start watchers at various moments, from revisions already passed.
		watchWaitFor(t, "writes to progress", func() bool { return ts.store.Rev() >= int64(2+i*100) })
		res := &result{from: 1 + rng.Int64N(ts.store.Rev())}
		switch i % 3 {
		case 0:
			res.key = []byte(keys(rng))
		case 1:
			res.key, res.end = []byte("r/1"), []byte("r/3")
		case 2:
			res.key, res.end = []byte("r/"), []byte("r0")
		}
		mu.Lock()
		results = append(results, res)
		mu.Unlock()
		opts := []clientv3.OpOption{clientv3.WithRev(res.from)}
		if res.end != nil {
			opts = append(opts, clientv3.WithRange(string(res.end)))
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Alternate between one shared stream and separate streams.
		if i%2 == 1 {
			ctx = clientv3.WithRequireLeader(ctx)
		}
		wch := ts.cli.Watch(ctx, string(res.key), opts...)
		wg.Go(func() {
			for {
				select {
				case wr, ok := <-wch:
					if !ok {
						return
					}
					if err := wr.Err(); err != nil {
						t.Errorf("watch from %d: %v", res.from, err)
						return
					}
					mu.Lock()
					for _, e := range wr.Events {
						res.got = append(res.got, watchEvString([]*mvccpb.Event{(*mvccpb.Event)(e)}))
					}
					mu.Unlock()
				case <-stopc:
					return
				}
			}
		})
	}
	last := <-done
	for _, res := range results {
		want := watchTruth(t, ts.store, res.key, res.end, res.from, last)
		watchWaitFor(t, "watchers to reach the last write", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(res.got) >= len(want)
		})
		mu.Lock()
		got := append([]string(nil), res.got...)
		mu.Unlock()
		if i := watchFirstDiff(got, want); i >= 0 {
			t.Errorf("watch [%q, %q) from %d: got %d events, want %d; first difference at %d:\n got %v\nwant %v",
				res.key, res.end, res.from, len(got), len(want), i, got[i:min(i+5, len(got))], want[i:min(i+5, len(want))])
		}
	}
	close(stopc)
	wg.Wait()
	t.Logf("%d writes, last revision %d, %d watchers fell behind", writes, last, h.stats().overflow)
}

// TestWatchResumeAfterReconnect: a client that reads part of the history,
// drops the stream and resumes at last+1 on a new one sees every event once.
func TestWatchResumeAfterReconnect(t *testing.T) {
	ts := newTestServer(t, Config{})
	const writes = 600
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range writes {
			if _, err := ts.cli.Put(context.Background(), fmt.Sprintf("re/%d", i%13), fmt.Sprint(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var got []int64
	next := int64(1)
	final := int64(writes + 1)
	for round := 0; next <= final; round++ {
		w := openRawWatch(t, ts.conn)
		id := w.created(&pb.WatchCreateRequest{Key: []byte("re/"), RangeEnd: []byte("re0"), StartRevision: next})
		for n := 0; n < 100 && next <= final; {
			r := w.recv()
			if r.WatchId != id || len(r.Events) == 0 {
				t.Fatalf("unexpected %v", r)
			}
			for _, e := range r.Events {
				got = append(got, e.Kv.ModRevision)
				next = e.Kv.ModRevision + 1
				n++
			}
		}
		w.cancel()
		if round > 1000 {
			t.Fatal("too many rounds")
		}
	}
	<-done
	if len(got) != writes {
		t.Fatalf("got %d events, want %d", len(got), writes)
	}
	for i, rev := range got {
		if rev != int64(i+2) {
			t.Fatalf("event %d at revision %d, want %d", i, rev, i+2)
		}
	}
}

// TestWatchClientv3Reconnect: a clientv3 watcher from revision 1 whose
// connection breaks repeatedly while writes continue resumes at last+1 and
// sees every event exactly once, in order.
func TestWatchClientv3Reconnect(t *testing.T) {
	ts := newWatchConnServer(t)
	kv := pb.NewKVClient(ts.slowConn)
	const writes = 400
	wch := ts.cli.Watch(t.Context(), "cr/", clientv3.WithPrefix(), clientv3.WithRev(1))
	var got []int64
	breaks := 0
	for i := range writes {
		if i%50 == 25 {
			ts.breakConns()
			breaks++
		}
		for {
			_, err := kv.Put(context.Background(), &pb.PutRequest{Key: fmt.Appendf(nil, "cr/%d", i%7), Value: []byte("v")}, grpc.WaitForReady(true))
			if err == nil {
				break
			}
			if status.Code(err) != codes.Unavailable {
				t.Fatal(err)
			}
		}
	}
	timeout := time.After(30 * time.Second)
	for len(got) < writes {
		select {
		case wr, ok := <-wch:
			if !ok || wr.Err() != nil {
				t.Fatalf("watch ended after %d events: %v", len(got), wr.Err())
			}
			for _, e := range wr.Events {
				got = append(got, e.Kv.ModRevision)
			}
		case <-timeout:
			t.Fatalf("got %d of %d events", len(got), writes)
		}
	}
	for i, rev := range got {
		if rev != int64(i+2) {
			t.Fatalf("event %d at revision %d, want %d (%d connection breaks)", i, rev, i+2, breaks)
		}
	}
	if opened := ts.srv.watch.stats().opened; opened < 2 {
		t.Fatalf("%d watch streams opened: the client never reconnected", opened)
	}
	t.Logf("%d connection breaks, %d watch streams opened", breaks, ts.srv.watch.stats().opened)
}

// TestWatchCleanup: streams that end (client cancel, client close, server
// stop) leave no watcher, stream or goroutine behind.
func TestWatchCleanup(t *testing.T) {
	ts := newTestServer(t, Config{})
	// Counted after the server started: its gRPC stream workers live on.
	before := runtime.NumGoroutine()
	h := ts.srv.watch
	var streams []*rawWatch
	for i := range 20 {
		w := openRawWatch(t, ts.conn)
		w.created(&pb.WatchCreateRequest{Key: fmt.Appendf(nil, "g/%d", i)})
		w.created(&pb.WatchCreateRequest{Key: []byte("g/"), RangeEnd: []byte("g0"), StartRevision: 1})
		streams = append(streams, w)
	}
	watchWaitFor(t, "40 synced watchers", func() bool { st := h.stats(); return st.streams == 20 && st.synced == 40 })
	for _, w := range streams[:10] {
		w.cancel()
	}
	for _, w := range streams[10:15] {
		if err := w.stream.CloseSend(); err != nil { // half-close: watchers stay
			t.Fatal(err)
		}
	}
	watchWaitFor(t, "10 streams to end", func() bool { st := h.stats(); return st.streams == 10 && st.synced == 20 })
	watchPut(t, ts, "g/12", "x")
	if evs := streams[12].eventsUntil(0, 2); len(evs) != 1 {
		t.Fatalf("half-closed stream: %s", watchEvString(evs))
	}

	// Stopping the hub ends the rest with "server stopped" and refuses new
	// streams.
	h.stop()
	h.stop()
	for _, w := range streams[10:] {
		for {
			_, err := w.stream.Recv()
			if err == nil {
				continue
			}
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "server stopped") {
				t.Fatalf("stream end: %v, want server stopped", err)
			}
			break
		}
	}
	w := openRawWatch(t, ts.conn)
	if _, err := w.stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("new stream after stop: %v", err)
	}
	watchWaitFor(t, "all streams to end", func() bool { st := h.stats(); return st.streams == 0 && st.synced == 0 })
	h.receivers.Wait()
	ts.cli.Close()
	ts.conn.Close()
	watchWaitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before+8 })
}

// TestWatchHubStopOnContext: run stops the hub when its context ends.
func TestWatchHubStopOnContext(t *testing.T) {
	ts := newTestServer(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		ts.srv.watch.run(ctx)
		close(ran)
	}()
	w := openRawWatch(t, ts.conn)
	w.created(&pb.WatchCreateRequest{Key: []byte("a")})
	cancel()
	<-ran
	if _, err := w.stream.Recv(); !errors.Is(err, rpctypes.ErrGRPCStopped) && status.Code(err) != codes.Unavailable {
		t.Fatalf("after run ended: %v", err)
	}
}

// TestWatchAfterRestore: a snapshot restore moves the store ahead without
// the observer; synced watchers replay the skipped revisions at once, not
// only at the next write (lock waiters and election observers on an idle
// cluster depend on it).
func TestWatchAfterRestore(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.srv.UseStateMachine(ts.sm)
	w := openRawWatch(t, ts.conn)
	id := w.created(&pb.WatchCreateRequest{Key: []byte("t/"), RangeEnd: []byte("t0")})
	watchPut(t, ts, "t/a", "1") // 2
	w.eventsUntil(id, 2)

	// Another replica that applied the same write and then more.
	other := mvcc.New()
	for i, kv := range [][2]string{{"t/a", "1"}, {"t/b", "2"}, {"u", "3"}, {"t/a", "4"}} {
		if _, err := other.Put(&pb.PutRequest{Key: []byte(kv[0]), Value: []byte(kv[1])}); err != nil {
			t.Fatal(i, err)
		}
	}
	var snap bytes.Buffer
	if _, err := other.Snapshot().WriteTo(&snap); err != nil {
		t.Fatal(err)
	}
	if err := ts.sm.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if got, want := watchEvString(w.eventsUntil(id, 5)), "PUT t/b@3=2; PUT t/a@5=4; "; got != want {
		t.Fatalf("after restore, before any write: %q, want %q", got, want)
	}
	// Created after the restore: the restored revisions are its past.
	w2 := openRawWatch(t, ts.conn)
	w2.create(&pb.WatchCreateRequest{Key: []byte("t/"), RangeEnd: []byte("t0")})
	if r := w2.recv(); !r.Created || r.Header.Revision != 5 {
		t.Fatalf("created after restore: %v, want header revision 5", r)
	}
	watchPut(t, ts, "t/c", "5") // 6
	if got, want := watchEvString(w.eventsUntil(id, 6)), "PUT t/c@6=5; "; got != want {
		t.Fatalf("after restore: %q, want %q", got, want)
	}
	if got, want := watchEvString(w2.eventsUntil(0, 6)), "PUT t/c@6=5; "; got != want {
		t.Fatalf("watcher created after restore: %q, want %q", got, want)
	}
}
