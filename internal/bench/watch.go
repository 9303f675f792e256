package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// stampDigits is the width of the send time at the start of a watch value:
// nanoseconds since the run's start, zero-padded.
const stampDigits = 20

// watchWrite puts the send time (since t0) under the writer's own key.
func (r *runner) watchWrite(ctx context.Context, w *worker) opResult {
	sent := time.Since(r.t0)
	v := stamp(sent, r.cfg.ValueSize)
	resp, err := w.cli.Put(ctx, r.cfg.KeyPrefix+watchDir+strconv.Itoa(w.id), v)
	if err != nil {
		return opResult{kind: "put", err: err, sent: sent}
	}
	return opResult{kind: "put", sent: sent, rev: resp.Header.Revision}
}

// stamp returns a value of size bytes (at least stampDigits+1) that starts
// with the send time.
func stamp(sent time.Duration, size int) string {
	var b strings.Builder
	b.Grow(size)
	s := strconv.FormatInt(int64(sent), 10)
	b.WriteString(strings.Repeat("0", stampDigits-len(s)))
	b.WriteString(s)
	b.WriteByte(' ')
	for b.Len() < size {
		b.WriteByte('x')
	}
	return b.String()
}

// parseStamp reads the send time back from a watch value.
func parseStamp(v []byte) (time.Duration, error) {
	if len(v) < stampDigits {
		return 0, fmt.Errorf("watch value of %d bytes has no timestamp", len(v))
	}
	n, err := strconv.ParseInt(string(v[:stampDigits]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("watch value timestamp: %v", err)
	}
	return time.Duration(n), nil
}

// watchSet is the Watch workload's watchers: one goroutine each, draining
// its watch channel until close.
type watchSet struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	seen   []atomic.Int64 // highest revision each watcher has received
}

// startWatchers opens cfg.Watchers watches on the watch prefix (spread over
// the clients) and returns once the server has created all of them.
func (r *runner) startWatchers(ctx context.Context) (*watchSet, error) {
	ctx, cancel := context.WithCancel(ctx)
	s := &watchSet{cancel: cancel, seen: make([]atomic.Int64, r.cfg.Watchers)}
	prefix := r.cfg.KeyPrefix + watchDir
	created := make(chan error, r.cfg.Watchers)
	for i := range r.cfg.Watchers {
		cli := r.clients[i%len(r.clients)]
		wch := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		s.wg.Go(func() { r.watch(ctx, wch, &s.seen[i], created) })
	}
	timeout := time.NewTimer(r.cfg.OpTimeout)
	defer timeout.Stop()
	var errs []error
	for range r.cfg.Watchers {
		select {
		case err := <-created:
			errs = append(errs, err)
		case <-timeout.C:
			errs = append(errs, errors.New("watch not created in time"))
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
		}
		if errs[len(errs)-1] != nil {
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.close()
		return nil, fmt.Errorf("bench: start watchers: %w", err)
	}
	return s, nil
}

// watch reports the creation of one watch on created, then records the
// latency of every event it receives.
func (r *runner) watch(ctx context.Context, wch clientv3.WatchChan, seen *atomic.Int64, created chan<- error) {
	first := true
	for resp := range wch {
		if first {
			first = false
			switch {
			case resp.Err() != nil:
				created <- resp.Err()
				return
			case !resp.Created:
				created <- errors.New("first watch response is not the creation")
				return
			}
			created <- nil
			continue
		}
		if err := resp.Err(); err != nil {
			if ctx.Err() == nil {
				r.failed.Add(1)
				r.samples.add("watch: " + err.Error())
			}
			return
		}
		now := time.Since(r.t0)
		for _, ev := range resp.Events {
			if ev.Type != mvccpb.PUT {
				continue
			}
			sent, err := parseStamp(ev.Kv.Value)
			if err != nil {
				r.samples.add(err.Error())
				continue
			}
			if r.inWindow(sent) {
				r.events.Add(1)
				r.hist.Record(now - sent)
			}
		}
		seen.Store(resp.Header.Revision)
	}
	if first {
		created <- errors.New("watch closed before it was created")
	}
}

// waitFor waits until every watcher has seen revision rev, for at most
// timeout. Watchers that fall short show up as missing events.
func (s *watchSet) waitFor(rev int64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		all := true
		for i := range s.seen {
			if s.seen[i].Load() < rev {
				all = false
				break
			}
		}
		if all {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling goroutines that own their progress
	}
}

// close cancels the watches and waits for the watchers to return.
func (s *watchSet) close() {
	s.cancel()
	s.wg.Wait()
}
