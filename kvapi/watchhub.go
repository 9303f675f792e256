package kvapi

import (
	"bytes"
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Watch delivery.
//
// The store calls watchHub.observe on the apply goroutine after every
// revision. observe never blocks: under the hub's lock it finds the synced
// watchers that match each event (an exact-key map plus a list of range
// watchers), appends the events to each watcher's bounded buffer and wakes
// the watcher's stream. The stream's own goroutine (the gRPC handler) takes
// the buffers and sends them.
//
// A watcher whose buffer (or whose stream's total) overflows becomes
// unsynced: it leaves the index, remembers the first revision it has not
// been handed, and drops its buffer, so a client that stops reading costs a
// bounded amount of memory and never slows the apply path. A watcher created
// at a past revision starts unsynced. The stream goroutine catches unsynced
// watchers up from the store's history and moves each back into the index
// under the hub's lock once it has replayed every revision the hub has
// observed (watchHub.rev), so no revision is missed or delivered twice.
//
// watchHub.rev is the last revision observe has seen, not the store's
// revision: the store publishes a revision before it calls its observer, and
// only revisions the hub has observed are safe to replay before rejoining.

const (
	// watcherBufferLimit is how many events a synced watcher may have waiting
	// for its stream before it falls back to catching up from history.
	watcherBufferLimit = 1024
	// streamBufferLimit bounds the events waiting on one stream, over all its
	// watchers.
	streamBufferLimit = 8192
	// catchUpBudget is about how many history events one catch-up step scans
	// before the stream goroutine turns to its other watchers and requests.
	catchUpBudget = 4096
)

// watchState is where a watcher's events come from.
type watchState uint8

const (
	// watchSynced: in the hub's index; observe buffers its events.
	watchSynced watchState = iota
	// watchUnsynced: out of the index; its stream replays history from next.
	watchUnsynced
	// watchGone: canceled or its stream ended.
	watchGone
)

// watchBatch holds one revision's events for one watcher, already filtered
// and shaped (prev_kv removed unless asked for). The events are the watcher's
// own copies; their key-values are shared with the store and never modified.
type watchBatch struct {
	rev int64
	evs []mvccpb.Event
}

// watcher is one watch of a stream.
type watcher struct {
	// Set at creation, read-only afterwards.
	id       int64
	st       *watchStream
	key      []byte
	end      []byte // nil: key alone; empty: every key from key on; else [key, end)
	startRev int64  // as requested (0: from the next revision)
	prevKV   bool
	noPut    bool
	noDelete bool
	fragment bool
	progress bool

	// Guarded by watchHub.mu.
	state  watchState
	next   int64        // synced: lowest revision to deliver; unsynced: next revision to replay
	buf    []watchBatch // synced: revisions observed but not yet taken by the stream
	nbuf   int          // events in buf
	queued bool         // on st.ready
	pos    int          // index in the hub's exact-key slice or range list
	curRev int64        // revision of buf's last batch, while observe fills it

	// Owned by the stream goroutine.
	catchingUp bool // on the stream's catch-up list
	idle       bool // no events sent since the last progress tick
}

// contains reports whether key is in the watcher's range.
func (w *watcher) contains(key []byte) bool {
	if w.end == nil {
		return bytes.Equal(key, w.key)
	}
	if bytes.Compare(key, w.key) < 0 {
		return false
	}
	return len(w.end) == 0 || bytes.Compare(key, w.end) < 0
}

// wants reports whether the watcher's filters let ev through.
func (w *watcher) wants(ev *mvccpb.Event) bool {
	switch ev.Type {
	case mvccpb.PUT:
		return !w.noPut
	case mvccpb.DELETE:
		return !w.noDelete
	}
	return true
}

// appendShaped appends the watcher's copy of ev to evs: the same key-values,
// without the previous one unless the watcher asked for it. (Events are
// built in place: protobuf messages must not be copied.)
func (w *watcher) appendShaped(evs []mvccpb.Event, ev *mvccpb.Event) []mvccpb.Event {
	evs = append(evs, mvccpb.Event{Type: ev.Type, Kv: ev.Kv})
	if w.prevKV {
		evs[len(evs)-1].PrevKv = ev.PrevKv
	}
	return evs
}

// watchHub routes the store's events to watch streams.
type watchHub struct {
	s                *Server
	progressInterval atomic.Int64 // time.Duration of periodic progress notifications
	gauges           watchGauges  // for Server.Stats

	mu           sync.Mutex
	watcherLimit int                   // events buffered per watcher before it falls behind
	streamLimit  int                   // events buffered per stream before its watchers fall behind
	rev          int64                 // last revision observed
	exact        map[string][]*watcher // synced single-key watchers by key
	ranges       []*watcher            // synced range watchers
	touched      []*watcher            // observe's scratch
	closed       bool
	streams      int   // open streams
	opened       int64 // streams opened, ever
	overflow     int64 // watchers that fell behind, ever

	donec     chan struct{} // closed by stop
	stopOnce  sync.Once
	receivers sync.WaitGroup // the streams' receive goroutines
}

// newWatchHub returns the hub for s and registers it as the store's
// observer.
func newWatchHub(s *Server) *watchHub {
	h := &watchHub{
		s:            s,
		watcherLimit: watcherBufferLimit,
		streamLimit:  streamBufferLimit,
		exact:        make(map[string][]*watcher),
		donec:        make(chan struct{}),
	}
	h.progressInterval.Store(int64(s.cfg.WatchProgressNotifyInterval))
	if s.store != nil {
		h.rev = s.store.Rev()
		s.store.SetObserver(h.observe)
	}
	return h
}

// run stops the watch service when ctx ends: every open stream ends with
// etcd's "server stopped" error (a stream blocked sending to a client that
// does not read ends when the gRPC server stops), and new streams are
// refused. It returns once ctx has ended.
func (h *watchHub) run(ctx context.Context) {
	<-ctx.Done()
	h.stop()
}

// stop ends every stream and refuses new ones. Idempotent; it does not wait.
func (h *watchHub) stop() {
	h.stopOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		close(h.donec)
	})
}

// observe is the store's observer: it runs on the apply goroutine after
// each revision and must not block.
func (h *watchHub) observe(rev int64, evs []mvccpb.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev != h.rev+1 {
		// The store's state was replaced (a snapshot was restored): the
		// revisions in between were never observed. Synced watchers
		// replay them from history.
		h.unsyncAllLocked()
	}
	h.rev = rev
	if len(h.exact) == 0 && len(h.ranges) == 0 {
		return
	}
	touched := h.touched[:0]
	for i := range evs {
		ev := &evs[i]
		for _, w := range h.exact[string(ev.Kv.Key)] {
			touched = appendEvent(touched, w, rev, ev)
		}
		for _, w := range h.ranges {
			if w.contains(ev.Kv.Key) {
				touched = appendEvent(touched, w, rev, ev)
			}
		}
	}
	for _, w := range touched {
		n := len(w.buf[len(w.buf)-1].evs)
		w.nbuf += n
		w.st.nbuf += n
		if w.nbuf > h.watcherLimit || w.st.nbuf > h.streamLimit {
			h.overflow++
			h.unsyncLocked(w)
			continue
		}
		w.st.readyLocked(w)
	}
	clear(touched)
	h.touched = touched[:0]
}

// restored is called on the apply goroutine after a snapshot replaced the
// store, now at revision rev: every synced watcher replays what it missed
// from the store's history at once. (observe would notice the gap only at
// the next write, which on an idle cluster may never come.)
func (h *watchHub) restored(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unsyncAllLocked()
	h.rev = rev
}

// appendEvent adds ev of revision rev to w's buffer if w wants it, and
// records w in touched the first time in this revision.
func appendEvent(touched []*watcher, w *watcher, rev int64, ev *mvccpb.Event) []*watcher {
	if rev < w.next || !w.wants(ev) {
		return touched
	}
	if w.curRev != rev {
		w.curRev = rev
		w.buf = append(w.buf, watchBatch{rev: rev})
		touched = append(touched, w)
	}
	b := &w.buf[len(w.buf)-1]
	b.evs = w.appendShaped(b.evs, ev)
	return touched
}

// addSyncedLocked puts w into the index.
func (h *watchHub) addSyncedLocked(w *watcher) {
	h.gauges.synced.Add(1)
	w.state = watchSynced
	if w.end == nil {
		k := string(w.key)
		w.pos = len(h.exact[k])
		h.exact[k] = append(h.exact[k], w)
		return
	}
	w.pos = len(h.ranges)
	h.ranges = append(h.ranges, w)
}

// removeSyncedLocked takes w out of the index.
func (h *watchHub) removeSyncedLocked(w *watcher) {
	h.gauges.synced.Add(-1)
	if w.end == nil {
		k := string(w.key)
		ws := h.exact[k]
		last := len(ws) - 1
		ws[w.pos] = ws[last]
		ws[w.pos].pos = w.pos
		ws[last] = nil
		if last == 0 {
			delete(h.exact, k)
		} else {
			h.exact[k] = ws[:last]
		}
		return
	}
	last := len(h.ranges) - 1
	h.ranges[w.pos] = h.ranges[last]
	h.ranges[w.pos].pos = w.pos
	h.ranges[last] = nil
	h.ranges = h.ranges[:last]
}

// dropBufferLocked discards w's buffered events.
func (h *watchHub) dropBufferLocked(w *watcher) {
	w.st.nbuf -= w.nbuf
	w.buf, w.nbuf, w.curRev = nil, 0, 0
}

// unsyncLocked moves a synced watcher out of the index; its stream will
// replay history from the first revision it has not been handed.
func (h *watchHub) unsyncLocked(w *watcher) {
	h.removeSyncedLocked(w)
	w.state = watchUnsynced
	if len(w.buf) > 0 {
		w.next = w.buf[0].rev
	} else {
		w.next = max(w.next, h.rev+1)
	}
	h.dropBufferLocked(w)
	w.st.readyLocked(w)
}

// unsyncAllLocked moves every synced watcher out of the index.
func (h *watchHub) unsyncAllLocked() {
	var all []*watcher
	for _, ws := range h.exact {
		all = append(all, ws...)
	}
	all = append(all, h.ranges...)
	for _, w := range all {
		h.unsyncLocked(w)
	}
}

// dropLocked removes w for good.
func (h *watchHub) dropLocked(w *watcher) {
	if w.state == watchSynced {
		h.removeSyncedLocked(w)
	}
	if w.state != watchGone {
		h.gauges.watchers.Add(-1)
	}
	w.state = watchGone
	h.dropBufferLocked(w)
}

// register places a new watcher: synced if it starts after the last observed
// revision, else unsynced from its start revision. It returns the revision
// the creation reflects.
func (h *watchHub) register(w *watcher) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gauges.watchers.Add(1)
	rev := h.rev
	if cur := h.s.store.Rev(); cur > rev+1 {
		// Only a restore moves the store more than one revision past the
		// last observed one (observe runs right after each write). The
		// restored revisions are history to this watcher; observe will
		// find the gap at the next write and replay what synced watchers
		// missed.
		rev = cur
	}
	if w.startRev == 0 || w.startRev > rev {
		w.next = max(w.startRev, rev+1)
		h.addSyncedLocked(w)
	} else {
		w.next = w.startRev
		w.state = watchUnsynced
	}
	return rev
}

// currentRev returns the last observed revision.
func (h *watchHub) currentRev() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// watchStats is a snapshot of the hub's bookkeeping, for tests.
type watchStats struct {
	streams  int
	opened   int64
	synced   int
	buffered int   // events waiting in synced watchers' buffers
	overflow int64 // watchers that fell behind, ever
}

func (h *watchHub) stats() watchStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := watchStats{streams: h.streams, opened: h.opened, synced: len(h.ranges), overflow: h.overflow}
	count := func(w *watcher) { st.buffered += w.nbuf }
	for _, ws := range h.exact {
		st.synced += len(ws)
		for _, w := range ws {
			count(w)
		}
	}
	for _, w := range h.ranges {
		count(w)
	}
	return st
}

// interval returns the progress notification period with up to 10% jitter,
// so that watchers created together do not all report at once.
func (h *watchHub) interval(jitter func(int64) int64) time.Duration {
	d := time.Duration(h.progressInterval.Load())
	if d <= 0 {
		d = DefaultWatchProgressNotifyInterval
	}
	if j := int64(d) / 10; j > 0 && int64(d) < math.MaxInt64-j {
		d += time.Duration(jitter(j))
	}
	return d
}
