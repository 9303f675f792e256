package workload

import (
	"context"
	"time"

	"github.com/meshkv/meshkv/chaos/check"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchRecord is what the watcher saw.
type watchRecord struct {
	events     []check.WatchEvent
	responses  int   // responses with events so far
	reconnects int   // streams opened after the first
	lastRev    int64 // highest revision delivered
	note       string
	lastErr    string
}

// watchFrom is the revision the watcher starts at: the first revision of a
// fresh store, so it must see every write.
const watchFrom = 1

// watcher watches the whole key space from the first revision. Whenever its
// stream ends (an error, a cancel by a node without a leader, or a request
// through ReconnectWatch) it opens a new one on the next endpoint, from its
// last delivered revision + 1.
func (w *Workload) watcher(ctx context.Context) {
	next := int64(watchFrom)
	for i := 0; ctx.Err() == nil; i++ {
		cli, ep := w.watchClient(i)
		if cli == nil {
			if !sleep(ctx, 100*time.Millisecond) {
				return
			}
			continue
		}
		if i > 0 {
			w.mu.Lock()
			w.watch.reconnects++
			w.mu.Unlock()
		}
		sctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := cli.Watch(sctx, "", clientv3.WithFromKey(), clientv3.WithRev(next))
		stop := w.consume(ctx, wch, &next)
		cancel()
		if stop {
			return
		}
		w.log.Debug("watch stream ended; resuming", "endpoint", ep, "from", next)
		if !sleep(ctx, 50*time.Millisecond) {
			return
		}
	}
}

// watchClient picks the client for the i-th stream: the live pinned
// endpoints in turn.
func (w *Workload) watchClient(i int) (*clientv3.Client, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	eps := w.liveEndpoints()
	if len(eps) == 0 {
		return nil, ""
	}
	ep := eps[i%len(eps)]
	return w.pinned[ep].cli, ep
}

// consume records the responses of one stream until it ends. It reports
// whether the watcher must stop for good (its context ended, or the cluster
// has no watch service).
func (w *Workload) consume(ctx context.Context, wch clientv3.WatchChan, next *int64) bool {
	for {
		select {
		case <-ctx.Done():
			return true
		case <-w.reconnc:
			return false
		case resp, ok := <-wch:
			if !ok {
				return ctx.Err() != nil
			}
			if err := resp.Err(); err != nil {
				w.mu.Lock()
				w.watch.lastErr = err.Error()
				if isUnimplemented(err) {
					w.watch.note = "watch service not available: " + err.Error()
				}
				note := w.watch.note
				w.mu.Unlock()
				return note != ""
			}
			if resp.Canceled {
				return false
			}
			if len(resp.Events) == 0 {
				continue
			}
			w.mu.Lock()
			n := w.watch.responses
			w.watch.responses++
			for _, ev := range resp.Events {
				e := check.WatchEvent{
					Response: n,
					Rev:      ev.Kv.ModRevision,
					Key:      string(ev.Kv.Key),
					Delete:   ev.Type == clientv3.EventTypeDelete,
				}
				if !e.Delete {
					e.Value, e.CreateRev, e.Version = string(ev.Kv.Value), ev.Kv.CreateRevision, ev.Kv.Version
				}
				w.watch.events = append(w.watch.events, e)
				w.watch.lastRev = max(w.watch.lastRev, e.Rev)
				*next = max(*next, e.Rev+1)
			}
			w.mu.Unlock()
		}
	}
}

// WatchedThrough is the highest revision the watcher has delivered.
func (w *Workload) WatchedThrough() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.watch.lastRev
}
