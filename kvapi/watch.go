package kvapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/bits"
	"math/rand/v2"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// Cancel reasons etcd gives for a create it refuses.
const (
	reasonEmptyRange  = "mvcc: watcher range is empty"
	reasonDuplicateID = "mvcc: duplicate watch ID provided on the WatchStream"
)

// autoWatchID in a create request asks the server to choose the id;
// invalidWatchID marks responses that belong to no single watcher.
const (
	autoWatchID    = 0
	invalidWatchID = -1
)

// reqBuffer is how many requests the receive goroutine may queue while the
// stream goroutine is busy sending.
const reqBuffer = 16

// watchServer is etcd's Watch service.
type watchServer struct {
	*Server
	pb.UnimplementedWatchServer
}

var _ pb.WatchServer = watchServer{}

func (s *Server) registerWatch(g *grpc.Server) { pb.RegisterWatchServer(g, watchServer{Server: s}) }

// Watch serves one bidirectional stream carrying any number of watchers. The
// calling (gRPC handler) goroutine owns the stream: it handles requests,
// sends responses and catches unsynced watchers up from history. A second
// goroutine only receives requests and hands them over; it ends once the
// handler has returned (gRPC then ends the stream's receive side).
func (s watchServer) Watch(gs pb.Watch_WatchServer) error {
	h := s.watch
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return rpctypes.ErrGRPCStopped
	}
	h.streams++
	h.opened++
	h.gauges.streams.Add(1)
	h.receivers.Add(1)
	h.mu.Unlock()

	st := &watchStream{
		h:        h,
		s:        s.Server,
		gs:       gs,
		ctx:      gs.Context(),
		limit:    s.cfg.MaxRequestBytes + GRPCOverheadBytes,
		reqc:     make(chan *pb.WatchRequest, reqBuffer),
		errc:     make(chan error, 1),
		wakec:    make(chan struct{}, 1),
		donec:    make(chan struct{}),
		watchers: make(map[int64]*watcher),
	}
	go func() {
		defer h.receivers.Done()
		st.receive()
	}()
	err := st.run()
	st.close()
	return err
}

// watchStream is the server side of one Watch stream.
type watchStream struct {
	h     *watchHub
	s     *Server
	gs    pb.Watch_WatchServer
	ctx   context.Context
	limit int // responses at least this large are fragmented when asked

	reqc  chan *pb.WatchRequest // receive goroutine -> stream goroutine
	errc  chan error            // the receive error that ends the stream
	wakec chan struct{}         // observe -> stream goroutine: watchers are ready
	donec chan struct{}         // closed when the stream goroutine is done

	// Guarded by watchHub.mu.
	ready []*watcher // watchers with buffered events or newly unsynced
	nbuf  int        // events buffered over all watchers

	// Owned by the stream goroutine.
	watchers map[int64]*watcher
	nextID   int64
	catchup  []*watcher // unsynced watchers, served round robin
	cursor   int
	taken    []takenBatches
	ticker   *time.Ticker // progress notifications, once a watcher asks
}

// takenBatches are a synced watcher's buffered revisions, taken for sending.
type takenBatches struct {
	w    *watcher
	bufs []watchBatch
}

// readyLocked queues w for its stream goroutine and wakes it.
func (st *watchStream) readyLocked(w *watcher) {
	if !w.queued {
		w.queued = true
		st.ready = append(st.ready, w)
	}
	select {
	case st.wakec <- struct{}{}:
	default:
	}
}

// receive forwards requests until the stream's receive side ends. A client
// that half-closes the stream (io.EOF) keeps its watchers, as in etcd.
func (st *watchStream) receive() {
	for {
		req, err := st.gs.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				st.errc <- err
			}
			return
		}
		select {
		case st.reqc <- req:
		case <-st.donec:
			return
		}
	}
}

// run is the stream goroutine's loop: send what observe buffered, then
// advance one unsynced watcher, then wait for a request, a wake-up or a
// progress tick (without waiting while watchers still need catching up).
func (st *watchStream) run() error {
	for {
		if err := st.flush(); err != nil {
			return err
		}
		var block bool
		if len(st.catchup) > 0 {
			if err := st.catchUpStep(); err != nil {
				return err
			}
		} else {
			block = true
		}
		var tickc <-chan time.Time
		if st.ticker != nil {
			tickc = st.ticker.C
		}
		var err error
		if block {
			select {
			case req := <-st.reqc:
				err = st.handle(req)
			case <-st.wakec:
			case <-tickc:
				err = st.progressTick()
			case err = <-st.errc:
			case <-st.ctx.Done():
				err = st.ctx.Err()
			case <-st.h.donec:
				err = rpctypes.ErrGRPCStopped
			}
		} else {
			select {
			case req := <-st.reqc:
				err = st.handle(req)
			case <-tickc:
				err = st.progressTick()
			case err = <-st.errc:
			case <-st.ctx.Done():
				err = st.ctx.Err()
			case <-st.h.donec:
				err = rpctypes.ErrGRPCStopped
			default:
			}
		}
		if err != nil {
			if errors.Is(err, context.Canceled) {
				err = rpctypes.ErrGRPCWatchCanceled
			}
			return err
		}
	}
}

// close removes the stream's watchers from the hub.
func (st *watchStream) close() {
	close(st.donec)
	if st.ticker != nil {
		st.ticker.Stop()
	}
	h := st.h
	h.mu.Lock()
	for _, w := range st.watchers {
		h.dropLocked(w)
	}
	clear(st.ready)
	st.ready = nil
	h.streams--
	h.gauges.streams.Add(-1)
	h.mu.Unlock()
	clear(st.watchers)
	st.catchup = nil
}

// handle serves one request. Events buffered before it arrived are sent
// first, so a client sees the events of every write that completed before
// it sent the request ahead of the request's answer.
func (st *watchStream) handle(req *pb.WatchRequest) error {
	if err := st.flush(); err != nil {
		return err
	}
	switch u := req.RequestUnion.(type) {
	case *pb.WatchRequest_CreateRequest:
		if u.CreateRequest != nil {
			return st.create(u.CreateRequest)
		}
	case *pb.WatchRequest_CancelRequest:
		if u.CancelRequest != nil {
			return st.cancel(u.CancelRequest.WatchId)
		}
	case *pb.WatchRequest_ProgressRequest:
		if u.ProgressRequest != nil {
			return st.progressAll()
		}
	default:
		st.s.cfg.Logger.Debug("ignoring unknown watch request", "type", u)
	}
	return nil
}

// create adds a watcher, or refuses it with one created-and-canceled
// response as etcd does.
func (st *watchStream) create(r *pb.WatchCreateRequest) error {
	key := r.Key
	if len(key) == 0 {
		key = []byte{0} // the smallest key
	}
	end := r.RangeEnd
	switch {
	case len(end) == 0:
		end = nil // the key alone
	case len(end) == 1 && end[0] == 0:
		end = []byte{} // every key from key on
	}
	refuse := func(reason string) error {
		return st.gs.Send(&pb.WatchResponse{
			Header:       st.s.header(st.h.currentRev()),
			WatchId:      invalidWatchID,
			Created:      true,
			Canceled:     true,
			CancelReason: reason,
		})
	}
	if r.StartRevision < 0 {
		return refuse(rpctypes.ErrCompacted.Error())
	}
	if reason := st.s.watchRefusal(st.ctx, key, r.RangeEnd); reason != "" {
		return refuse(reason)
	}
	if len(end) > 0 && bytes.Compare(key, end) >= 0 {
		return refuse(reasonEmptyRange)
	}
	id := r.WatchId
	if id == autoWatchID {
		for st.watchers[st.nextID] != nil {
			st.nextID++
		}
		id = st.nextID
		st.nextID++
	} else if st.watchers[id] != nil {
		return refuse(reasonDuplicateID)
	}

	w := &watcher{
		id:       id,
		st:       st,
		key:      key,
		end:      end,
		startRev: r.StartRevision,
		prevKV:   r.PrevKv,
		fragment: r.Fragment,
		progress: r.ProgressNotify,
		idle:     true,
	}
	for _, f := range r.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDelete = true
		}
	}
	rev := st.h.register(w)
	st.watchers[id] = w
	if w.state == watchUnsynced {
		w.catchingUp = true
		st.catchup = append(st.catchup, w)
	}
	if w.progress && st.ticker == nil {
		st.ticker = time.NewTicker(st.h.interval(rand.Int64N))
	}
	return st.gs.Send(&pb.WatchResponse{Header: st.s.header(rev), WatchId: id, Created: true})
}

// cancel removes a watcher; an unknown id gets no response, as in etcd.
func (st *watchStream) cancel(id int64) error {
	w := st.watchers[id]
	if w == nil {
		return nil
	}
	h := st.h
	h.mu.Lock()
	h.dropLocked(w)
	rev := h.rev
	h.mu.Unlock()
	delete(st.watchers, id)
	return st.gs.Send(&pb.WatchResponse{Header: st.s.header(rev), WatchId: id, Canceled: true})
}

// progressAll answers a progress request with the last observed revision
// (watch id -1), after every event up to it, if all the stream's watchers
// are synced and have reached their start revision. Otherwise, as etcd, it
// does not answer.
func (st *watchStream) progressAll() error {
	if len(st.watchers) == 0 {
		return nil
	}
	h := st.h
	h.mu.Lock()
	rev := h.rev
	for _, w := range st.watchers {
		if w.state != watchSynced || rev < w.startRev {
			h.mu.Unlock()
			return nil
		}
	}
	st.takeLocked()
	h.mu.Unlock()
	if err := st.sendTaken(); err != nil {
		return err
	}
	return st.gs.Send(&pb.WatchResponse{Header: st.s.header(rev), WatchId: invalidWatchID})
}

// progressTick sends a progress notification to each watcher that asked for
// them, had no events since the previous tick, and is synced with nothing
// waiting.
func (st *watchStream) progressTick() error {
	h := st.h
	var ids []int64
	h.mu.Lock()
	rev := h.rev
	for id, w := range st.watchers {
		if !w.progress {
			continue
		}
		if w.idle && w.state == watchSynced && w.nbuf == 0 && rev >= w.startRev {
			ids = append(ids, id)
		}
		w.idle = true
	}
	h.mu.Unlock()
	for _, id := range ids {
		if err := st.gs.Send(&pb.WatchResponse{Header: st.s.header(rev), WatchId: id}); err != nil {
			return err
		}
	}
	return nil
}

// flush sends everything observe has buffered for this stream and picks up
// watchers that fell behind.
func (st *watchStream) flush() error {
	st.h.mu.Lock()
	st.takeLocked()
	st.h.mu.Unlock()
	return st.sendTaken()
}

// takeLocked takes the buffers of the ready watchers into st.taken and puts
// the unsynced ones on the catch-up list.
func (st *watchStream) takeLocked() {
	for _, w := range st.ready {
		w.queued = false
		switch w.state {
		case watchSynced:
			if len(w.buf) > 0 {
				st.taken = append(st.taken, takenBatches{w: w, bufs: w.buf})
				st.nbuf -= w.nbuf
				w.buf, w.nbuf, w.curRev = nil, 0, 0
			}
		case watchUnsynced:
			if !w.catchingUp {
				w.catchingUp = true
				st.catchup = append(st.catchup, w)
			}
		}
	}
	clear(st.ready)
	st.ready = st.ready[:0]
}

// sendTaken sends st.taken.
func (st *watchStream) sendTaken() error {
	for i, t := range st.taken {
		if err := st.sendBatches(t.w, t.bufs, 0); err != nil {
			return err
		}
		st.taken[i] = takenBatches{}
	}
	st.taken = st.taken[:0]
	return nil
}

// sendBatches sends w's revisions in as few responses as the size limit
// allows, never splitting a revision (except by fragmenting, when w asked
// for it). A response's header carries its last revision, or rev for the
// last response when rev is larger (a catch-up that reached rev).
func (st *watchStream) sendBatches(w *watcher, bufs []watchBatch, rev int64) error {
	for len(bufs) > 0 {
		n, size, count := 0, 0, 0
		for n < len(bufs) {
			bs := approxSize(bufs[n].evs)
			if n > 0 && size+bs >= st.limit {
				break
			}
			size += bs
			count += len(bufs[n].evs)
			n++
		}
		evs := make([]*mvccpb.Event, 0, count)
		for _, b := range bufs[:n] {
			for i := range b.evs {
				evs = append(evs, &b.evs[i])
			}
		}
		hrev := bufs[n-1].rev
		bufs = bufs[n:]
		if len(bufs) == 0 && rev > hrev {
			hrev = rev
		}
		if err := st.send(w, &pb.WatchResponse{Header: st.s.header(hrev), WatchId: w.id, Events: evs}); err != nil {
			return err
		}
		st.h.gauges.events.Add(uint64(len(evs)))
		w.idle = false
	}
	return nil
}

// approxSize estimates the encoded size of events, for grouping revisions
// into responses.
func approxSize(evs []mvccpb.Event) int {
	n := 0
	for i := range evs {
		e := &evs[i]
		n += 40 + len(e.Kv.Key) + len(e.Kv.Value)
		if e.PrevKv != nil {
			n += 40 + len(e.PrevKv.Key) + len(e.PrevKv.Value)
		}
	}
	return n
}

// send sends an event response, fragmented if w asked for fragments and it
// is at least the size limit, as etcd does: each fragment holds as many
// events as keep it under the limit (at least one), all but the last have
// Fragment set.
func (st *watchStream) send(w *watcher, wr *pb.WatchResponse) error {
	if !w.fragment || len(wr.Events) < 2 || proto.Size(wr) < st.limit {
		return st.gs.Send(wr)
	}
	evs := wr.Events
	overhead := proto.Size(&pb.WatchResponse{Header: wr.Header, WatchId: wr.WatchId, Fragment: true})
	for len(evs) > 0 {
		n, size := 0, overhead
		for n < len(evs) {
			es := proto.Size(evs[n])
			fs := 1 + varintLen(uint64(es)) + es
			if n > 0 && size+fs >= st.limit {
				break
			}
			size += fs
			n++
		}
		part := &pb.WatchResponse{Header: wr.Header, WatchId: wr.WatchId, Events: evs[:n:n], Fragment: n < len(evs)}
		evs = evs[n:]
		if err := st.gs.Send(part); err != nil {
			return err
		}
	}
	return nil
}

func varintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// catchUpStep advances the next unsynced watcher in round-robin order.
func (st *watchStream) catchUpStep() error {
	if st.cursor >= len(st.catchup) {
		st.cursor = 0
	}
	i := st.cursor
	w := st.catchup[i]
	done, err := st.catchUp(w)
	if err != nil {
		return err
	}
	if done {
		w.catchingUp = false
		last := len(st.catchup) - 1
		st.catchup[i] = st.catchup[last]
		st.catchup[last] = nil
		st.catchup = st.catchup[:last]
	} else {
		st.cursor = i + 1
	}
	return nil
}

// catchUp replays w's missed revisions from the store's history, scanning
// about catchUpBudget events, and moves w back into the hub's index once it
// has replayed every observed revision. done reports that w no longer needs
// catching up (rejoined, canceled, or gone).
func (st *watchStream) catchUp(w *watcher) (done bool, err error) {
	h := st.h
	store := st.s.store
	budget := catchUpBudget
	for {
		h.mu.Lock()
		if w.state != watchUnsynced {
			h.mu.Unlock()
			return true, nil
		}
		next, target := w.next, h.rev
		if next > target {
			// Every observed revision is replayed, and observe cannot run
			// while the lock is held: from the next revision on, w is fed
			// live again.
			h.addSyncedLocked(w)
			h.mu.Unlock()
			return true, nil
		}
		h.mu.Unlock()
		if budget <= 0 {
			return false, nil
		}

		var (
			acc     []watchBatch
			accSize int
			last    = next - 1
			stopped bool
			sendErr error
		)
		herr := store.History(next, target+1, func(rev int64, evs []mvccpb.Event) bool {
			var b watchBatch
			for i := range evs {
				if ev := &evs[i]; w.contains(ev.Kv.Key) && w.wants(ev) {
					b.evs = w.appendShaped(b.evs, ev)
				}
			}
			last = rev
			budget -= len(evs)
			if len(b.evs) > 0 {
				b.rev = rev
				bs := approxSize(b.evs)
				if len(acc) > 0 && accSize+bs >= st.limit {
					if sendErr = st.sendBatches(w, acc, 0); sendErr != nil {
						return false
					}
					acc, accSize = nil, 0
				}
				acc = append(acc, b)
				accSize += bs
			}
			if budget <= 0 {
				stopped = true
				return false
			}
			return true
		})
		if sendErr != nil {
			return false, sendErr
		}
		reached := target
		if stopped || herr != nil {
			reached = last
		}
		if len(acc) > 0 {
			if err := st.sendBatches(w, acc, reached); err != nil {
				return false, err
			}
		}
		if errors.Is(herr, mvcc.ErrCompacted) {
			return true, st.compacted(w)
		}
		if herr != nil {
			return false, herr
		}
		h.mu.Lock()
		if w.state == watchUnsynced {
			w.next = reached + 1
		}
		h.mu.Unlock()
	}
}

// compacted cancels w because the history it needs is compacted away, with
// etcd's response: canceled, the compact revision, header revision 0.
func (st *watchStream) compacted(w *watcher) error {
	compact := st.s.store.CompactRev()
	h := st.h
	h.mu.Lock()
	gone := w.state == watchGone
	h.dropLocked(w)
	h.mu.Unlock()
	if gone {
		return nil
	}
	delete(st.watchers, w.id)
	return st.gs.Send(&pb.WatchResponse{
		Header:          st.s.header(0),
		WatchId:         w.id,
		Canceled:        true,
		CompactRevision: compact,
	})
}
