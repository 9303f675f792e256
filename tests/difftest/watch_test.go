package difftest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// watchAll opens a watch over every key from rev on tg and returns the
// responses it receives until done(responses) is true. The header of each
// response is normalized.
func watchAll(ctx context.Context, tg *target, req *pb.WatchCreateRequest, done func([]*pb.WatchResponse) bool) ([]*pb.WatchResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	stream, err := tg.watch.Watch(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: req}}); err != nil {
		return nil, err
	}
	var got []*pb.WatchResponse
	for !done(got) {
		resp, err := stream.Recv()
		if err != nil {
			return got, err
		}
		clearHeader(resp.Header)
		got = append(got, resp)
	}
	return got, nil
}

// events flattens the events of watch responses.
func events(resps []*pb.WatchResponse) []*mvccpb.Event {
	var evs []*mvccpb.Event
	for _, r := range resps {
		evs = append(evs, r.Events...)
	}
	return evs
}

// compareWatchHistory watches every key from revision from on both servers
// and compares the events (with previous key-values) up to revision to. How
// events are grouped into responses may differ, but a revision's events must
// never be split across responses.
func (r *runner) compareWatchHistory(from, to int64) {
	r.t.Helper()
	if to <= 1 {
		return
	}
	req := &pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRevision: from, PrevKv: true}
	reached := func(resps []*pb.WatchResponse) bool {
		if n := len(resps); n > 0 && resps[n-1].Canceled {
			return true
		}
		evs := events(resps)
		return len(evs) > 0 && evs[len(evs)-1].Kv.ModRevision >= to
	}
	ctx := r.t.Context()
	a, errA := watchAll(ctx, r.ref, req, reached)
	if errA != nil {
		r.t.Fatalf("watch history on %s: %v", r.ref.name, errA)
	}
	b, errB := watchAll(ctx, r.sut, req, reached)
	if status.Code(errB) == codes.Unimplemented {
		r.t.Logf("%s does not serve Watch (%v): watch history not compared", r.sut.name, errB)
		return
	}
	if errB != nil {
		r.t.Fatalf("watch history from %d to %d on %s: %v (after %d responses)", from, to, r.sut.name, errB, len(b))
	}
	ea, eb := events(a), events(b)
	for i := range max(len(ea), len(eb)) {
		var sa, sb string
		if i < len(ea) {
			sa = ea[i].String()
		}
		if i < len(eb) {
			sb = eb[i].String()
		}
		if sa != sb {
			r.t.Fatalf("watch from revision %d (%s): event %d of %d/%d differs\n%-7s %s\n%-7s %s",
				from, r.label, i, len(ea), len(eb), r.ref.name+":", sa, r.sut.name+":", sb)
		}
	}
	seen := map[int64]int{} // revision -> index of the response holding its events
	for i, resp := range b {
		for _, ev := range resp.Events {
			if j, ok := seen[ev.Kv.ModRevision]; ok && j != i {
				r.t.Fatalf("%s split the events of revision %d across watch responses %d and %d", r.sut.name, ev.Kv.ModRevision, j, i)
			}
			seen[ev.Kv.ModRevision] = i
		}
	}
	r.t.Logf("watch history from revision %d to %d: %d events match", from, to, len(ea))
}

// compareWatchCompacted watches from just below the compacted revision and
// compares the cancellation both servers answer with.
func (r *runner) compareWatchCompacted(compactRev int64) {
	r.t.Helper()
	req := &pb.WatchCreateRequest{Key: []byte("a"), StartRevision: compactRev - 1}
	canceled := func(resps []*pb.WatchResponse) bool {
		n := len(resps)
		return n > 0 && (resps[n-1].Canceled || len(resps[n-1].Events) > 0)
	}
	ctx := r.t.Context()
	a, errA := watchAll(ctx, r.ref, req, canceled)
	b, errB := watchAll(ctx, r.sut, req, canceled)
	if status.Code(errB) == codes.Unimplemented {
		return
	}
	if sa, sb := fmt.Sprint(a, errA), fmt.Sprint(b, errB); sa != sb {
		r.t.Fatalf("watch from below the compacted revision %d differs\n%-7s %s\n%-7s %s", compactRev, r.ref.name+":", sa, r.sut.name+":", sb)
	}
}

// watchPair is one watch stream on each server, driven in lockstep.
type watchPair struct {
	r      *runner
	cancel context.CancelFunc
	a, b   pb.Watch_WatchClient
}

// openWatch opens a watch stream on both servers, or returns nil when the
// server under test does not serve Watch. The streams end with the test.
func (r *runner) openWatch() *watchPair {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 60*time.Second)
	r.t.Cleanup(cancel)
	a, err := r.ref.watch.Watch(ctx)
	if err != nil {
		r.t.Fatalf("watch on %s: %v", r.ref.name, err)
	}
	b, err := r.sut.watch.Watch(ctx)
	if err != nil {
		r.t.Fatalf("watch on %s: %v", r.sut.name, err)
	}
	w := &watchPair{r: r, cancel: cancel, a: a, b: b}
	// Probe with a watch on a key nothing writes; it stays open, and keeps
	// progress requests answered (they are not, on a stream without watchers).
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("\x00probe")}}})
	if _, err := b.Recv(); status.Code(err) == codes.Unimplemented {
		r.t.Logf("%s does not serve Watch: %v", r.sut.name, err)
		return nil
	} else if err != nil {
		r.t.Fatalf("watch on %s: %v", r.sut.name, err)
	}
	if _, err := a.Recv(); err != nil {
		r.t.Fatalf("watch on %s: %v", r.ref.name, err)
	}
	return w
}

func (w *watchPair) send(req *pb.WatchRequest) {
	w.r.t.Helper()
	if err := w.a.Send(req); err != nil {
		w.r.t.Fatalf("watch send to %s: %v", w.r.ref.name, err)
	}
	if err := w.b.Send(req); err != nil {
		w.r.t.Fatalf("watch send to %s: %v", w.r.sut.name, err)
	}
	w.r.record("watch send: " + req.String())
}

// recv receives n responses from each stream and compares them.
func (w *watchPair) recv(n int) {
	w.r.t.Helper()
	for range n {
		ra, errA := w.a.Recv()
		rb, errB := w.b.Recv()
		if errA != nil {
			w.r.t.Fatalf("watch receive from %s: %v", w.r.ref.name, errA)
		}
		sa, sb := "", fmt.Sprint(errB)
		clearHeader(ra.Header)
		sa = ra.String()
		if errB == nil {
			clearHeader(rb.Header)
			sb = rb.String()
		}
		if sa != sb {
			w.r.t.Fatalf("watch responses differ (%s)\n%-7s %s\n%-7s %s\npreceding ops (oldest first):\n%s",
				w.r.label, w.r.ref.name+":", sa, w.r.sut.name+":", sb, w.r.context())
		}
		w.r.record("watch receive: " + sa)
	}
}

// recvEvents receives responses until n events have arrived on each stream
// and compares the events; their grouping into responses may differ.
func (w *watchPair) recvEvents(n int) {
	w.r.t.Helper()
	collect := func(s pb.Watch_WatchClient, name string) []string {
		var evs []string
		for len(evs) < n {
			resp, err := s.Recv()
			if err != nil {
				w.r.t.Fatalf("watch receive from %s after %d of %d events: %v", name, len(evs), n, err)
			}
			for _, ev := range resp.Events {
				evs = append(evs, fmt.Sprintf("watch %d: %s", resp.WatchId, ev.String()))
			}
		}
		return evs
	}
	ea, eb := collect(w.a, w.r.ref.name), collect(w.b, w.r.sut.name)
	for i := range ea {
		if i >= len(eb) || ea[i] != eb[i] {
			w.r.t.Fatalf("watch events differ at %d (%s)\n%s:\n  %s\n%s:\n  %s", i, w.r.label,
				w.r.ref.name, strings.Join(ea, "\n  "), w.r.sut.name, strings.Join(eb, "\n  "))
		}
	}
	if len(eb) > len(ea) {
		w.r.t.Fatalf("%s sent more watch events than %s: %v", w.r.sut.name, w.r.ref.name, eb[len(ea):])
	}
	w.r.record(fmt.Sprintf("watch events: %d match", n))
}

// compareKeepAlive sends one keep-alive per lease id on a keep-alive stream
// of each server and compares the answers.
func (r *runner) compareKeepAlive(ids []int64) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 20*time.Second)
	defer cancel()
	open := func(tg *target) pb.Lease_LeaseKeepAliveClient {
		s, err := tg.lease.LeaseKeepAlive(ctx)
		if err != nil {
			r.t.Fatalf("keep-alive stream on %s: %v", tg.name, err)
		}
		return s
	}
	sa, sb := open(r.ref), open(r.sut)
	for _, id := range ids {
		answer := func(s pb.Lease_LeaseKeepAliveClient) string {
			if err := s.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
				return "send: " + err.Error()
			}
			resp, err := s.Recv()
			if err != nil {
				return "receive: " + err.Error()
			}
			clearHeader(resp.Header)
			return resp.String()
		}
		if a, b := answer(sa), answer(sb); a != b {
			r.t.Fatalf("keep-alive of lease %d differs (%s)\n%-7s %s\n%-7s %s", id, r.label, r.ref.name+":", a, r.sut.name+":", b)
		}
	}
}
