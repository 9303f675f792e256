package workload

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/meshkv/meshkv/chaos/check"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// History is everything a run recorded and read back, the input of the
// checkers.
type History struct {
	// Ops are the key-value operations, the final reads included.
	Ops []check.Op `json:"ops"`

	Acquisitions []check.Acquisition    `json:"acquisitions"`
	Guarded      []check.GuardedWrite   `json:"guarded_writes"`
	Chain        []check.CounterVersion `json:"counter_versions"`
	LockStats    LockStats              `json:"lock_stats"`
	// LockSkip says why locks were not exercised (the cluster has no lease
	// or watch service, or no lock workers ran).
	LockSkip string `json:"lock_skip,omitempty"`
	// LockErr says why the counter versions could not be read back.
	LockErr string `json:"lock_err,omitempty"`

	Watch check.WatchHistory `json:"watch"`
	// WatchSkip says why nothing was watched (no watch service, or the
	// watcher was off).
	WatchSkip string `json:"watch_skip,omitempty"`
	// WatchErr says why the watch history may be incomplete (the final
	// read failed, or the watcher did not catch up in time).
	WatchErr string `json:"watch_err,omitempty"`

	// ReadBack holds every acknowledged write (key-value and guarded) read
	// at its revision after the run.
	ReadBack []check.ReadBack `json:"read_back"`
}

// readBatch is how many reads go into one read-back Txn (etcd allows 128
// operations per list).
const readBatch = 64

// Collect stops the writers, then reads back what the checkers need through
// a client balancing over every live endpoint: the final value of every key
// (recorded as final Get operations), every acknowledged write at its
// revision, the committed versions of the lock counter and the whole store.
// It waits (bounded by ctx) for the watcher to deliver everything up to the
// final revision, then closes the workload. Read failures are recorded in the
// History rather than returned, so that the checks that can run still run.
func (w *Workload) Collect(ctx context.Context) (*History, error) {
	w.Stop()
	defer w.Close()
	w.mu.Lock()
	eps := w.liveEndpoints()
	id := w.takeID()
	w.mu.Unlock()
	if len(eps) == 0 {
		return nil, errors.New("workload: no live endpoint to read back from")
	}
	cli, err := w.newClient(eps...)
	if err != nil {
		return nil, err
	}

	for k := range w.cfg.Keys {
		key := fmt.Sprintf("%sk%d", DefaultKeyPrefix, k)
		op := check.Op{Client: id, Kind: check.Get, Key: key, Endpoint: "final"}
		for attempt := 0; ; attempt++ {
			w.do(ctx, cli, &op)
			if op.Outcome == check.OK || ctx.Err() != nil || attempt == 20 {
				break
			}
			sleep(ctx, 200*time.Millisecond)
		}
		w.record(op)
	}

	w.mu.Lock()
	h := &History{
		Ops:          slices.Clone(w.ops),
		Acquisitions: slices.Clone(w.acqs),
		Guarded:      slices.Clone(w.guarded),
		LockStats:    w.lockStats,
		LockSkip:     w.lockNote,
		WatchSkip:    w.watch.note,
	}
	w.mu.Unlock()

	writes := check.AckedWrites(h.Ops)
	for _, g := range h.Guarded {
		writes = append(writes, check.Write{Key: DefaultLockCounterKey, Value: encodeCounter(g.Holder, g.Token, g.Counter), Rev: g.Rev, Source: g.Holder})
	}
	h.ReadBack = w.readBack(ctx, cli, writes)

	switch {
	case w.cfg.LockWorkers == 0:
		h.LockSkip = "no lock workers"
	case h.LockSkip == "":
		chain, err := w.counterVersions(ctx, cli)
		if err != nil {
			h.LockErr = "reading back the counter versions: " + err.Error()
		}
		h.Chain = chain
	}

	if w.cfg.NoWatch {
		h.WatchSkip = "watcher turned off"
	} else if h.WatchSkip == "" {
		h.Watch, err = w.finalWatch(ctx, cli)
		if err != nil {
			h.WatchErr = err.Error()
		}
		w.mu.Lock()
		h.WatchSkip = w.watch.note
		w.mu.Unlock()
	}
	return h, nil
}

// readBack reads every write's key at the write's revision, in batches.
func (w *Workload) readBack(ctx context.Context, cli *clientv3.Client, writes []check.Write) []check.ReadBack {
	out := make([]check.ReadBack, 0, len(writes))
	for start := 0; start < len(writes); start += readBatch {
		batch := writes[start:min(start+readBatch, len(writes))]
		ops := make([]clientv3.Op, len(batch))
		for i, wr := range batch {
			ops[i] = clientv3.OpGet(wr.Key, clientv3.WithRev(wr.Rev))
		}
		var resp *clientv3.TxnResponse
		var err error
		for attempt := 0; attempt < 10; attempt++ {
			tctx, cancel := context.WithTimeout(ctx, 2*w.cfg.OpTimeout)
			resp, err = cli.Txn(tctx).Then(ops...).Commit()
			cancel()
			if err == nil || ctx.Err() != nil {
				break
			}
			sleep(ctx, 200*time.Millisecond)
		}
		for i, wr := range batch {
			rb := check.ReadBack{Write: wr}
			if err != nil {
				rb.Err = err.Error()
			} else if kvs := resp.Responses[i].GetResponseRange().GetKvs(); len(kvs) > 0 {
				rb.Found, rb.Got, rb.ModRev = true, string(kvs[0].Value), kvs[0].ModRevision
			}
			out = append(out, rb)
		}
	}
	return out
}

// counterVersions walks the lock counter's versions from the newest back to
// the first, by reading it just below each version's mod revision.
func (w *Workload) counterVersions(ctx context.Context, cli *clientv3.Client) ([]check.CounterVersion, error) {
	var chain []check.CounterVersion
	var rev int64 // 0: current
	for {
		var opts []clientv3.OpOption
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		var resp *clientv3.GetResponse
		var err error
		for attempt := 0; attempt < 10; attempt++ {
			gctx, cancel := context.WithTimeout(ctx, 2*w.cfg.OpTimeout)
			resp, err = cli.Get(gctx, DefaultLockCounterKey, opts...)
			cancel()
			if err == nil || ctx.Err() != nil {
				break
			}
			sleep(ctx, 200*time.Millisecond)
		}
		if err != nil {
			return nil, err
		}
		if len(resp.Kvs) == 0 {
			break
		}
		kv := resp.Kvs[0]
		holder, token, counter, err := decodeCounter(string(kv.Value))
		if err != nil {
			return nil, err
		}
		chain = append(chain, check.CounterVersion{Rev: kv.ModRevision, Holder: holder, Token: token, Counter: counter})
		if kv.ModRevision <= 1 {
			break
		}
		rev = kv.ModRevision - 1
	}
	slices.Reverse(chain)
	return chain, nil
}

// finalWatch reads the whole store and waits until the watcher delivered
// every revision up to the store's.
func (w *Workload) finalWatch(ctx context.Context, cli *clientv3.Client) (check.WatchHistory, error) {
	var resp *clientv3.GetResponse
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		gctx, cancel := context.WithTimeout(ctx, 2*w.cfg.OpTimeout)
		resp, err = cli.Get(gctx, "", clientv3.WithFromKey())
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		sleep(ctx, 200*time.Millisecond)
	}
	if err != nil {
		return check.WatchHistory{}, fmt.Errorf("reading the final store: %w", err)
	}
	to := resp.Header.Revision
	final := make([]check.KV, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		final[i] = check.KV{Key: string(kv.Key), Value: string(kv.Value), ModRev: kv.ModRevision, CreateRev: kv.CreateRevision, Version: kv.Version}
	}
	// Wait for the watcher; nudge it to another endpoint when it makes no
	// progress for a while (its node may be cut off or have lost its
	// leader without cancelling the stream).
	lastSeen, lastProgress := w.WatchedThrough(), time.Now()
	var waitErr error
	for w.WatchedThrough() < to && !w.watchUnsupported() {
		if !sleep(ctx, 50*time.Millisecond) {
			waitErr = fmt.Errorf("watcher delivered revisions only up to %d of %d: %w", w.WatchedThrough(), to, context.Cause(ctx))
			break
		}
		if cur := w.WatchedThrough(); cur != lastSeen {
			lastSeen, lastProgress = cur, time.Now()
		} else if time.Since(lastProgress) > 2*time.Second {
			w.ReconnectWatch()
			lastProgress = time.Now()
		}
	}
	w.mu.Lock()
	h := check.WatchHistory{
		From:       watchFrom,
		To:         to,
		Events:     slices.Clone(w.watch.events),
		Final:      final,
		Reconnects: w.watch.reconnects,
	}
	w.mu.Unlock()
	return h, waitErr
}

func (w *Workload) watchUnsupported() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.watch.note != ""
}
