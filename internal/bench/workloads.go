package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Key layout under Config.KeyPrefix.
const (
	keysDir  = "k/"    // the key space of put, get, txn, mixed and load
	locksDir = "lock/" // lock names
	watchDir = "w/"    // the watched prefix; one key per writer
)

// KeyName returns the name of key i of the key space under prefix, as the
// workloads write it.
func KeyName(prefix string, i int) string {
	return fmt.Sprintf("%s%s%08d", prefix, keysDir, i)
}

func (r *runner) randomKey(w *worker) string {
	return KeyName(r.cfg.KeyPrefix, w.rng.IntN(r.cfg.Keys))
}

// opFunc returns the operation of the configured workload.
func (r *runner) opFunc() opFunc {
	switch r.cfg.Workload {
	case Put:
		return r.put
	case Get:
		return r.get
	case Txn:
		return r.cas
	case Lock:
		return r.lock
	case Lease:
		return r.lease
	case Watch:
		return r.watchWrite
	case Connect:
		return r.connect
	default: // Mixed; Validate admits nothing else here
		return r.mixed
	}
}

func (r *runner) put(ctx context.Context, w *worker) opResult {
	_, err := w.cli.Put(ctx, r.randomKey(w), r.value)
	return opResult{kind: "put", err: err}
}

func (r *runner) get(ctx context.Context, w *worker) opResult {
	_, err := w.cli.Get(ctx, r.randomKey(w), r.readOpts()...)
	return opResult{kind: "get", err: err}
}

func (r *runner) readOpts() []clientv3.OpOption {
	if r.cfg.Serializable {
		return []clientv3.OpOption{clientv3.WithSerializable()}
	}
	return nil
}

// cas reads a key's mod revision, then puts it only if that is unchanged.
func (r *runner) cas(ctx context.Context, w *worker) opResult {
	k := r.randomKey(w)
	g, err := w.cli.Get(ctx, k, r.readOpts()...)
	if err != nil {
		return opResult{kind: "txn", err: err}
	}
	var rev int64 // a missing key has mod revision 0
	if len(g.Kvs) > 0 {
		rev = g.Kvs[0].ModRevision
	}
	t, err := w.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
		Then(clientv3.OpPut(k, r.value)).
		Commit()
	if err != nil {
		return opResult{kind: "txn", err: err}
	}
	return opResult{kind: "txn", conflict: !t.Succeeded}
}

func (r *runner) mixed(ctx context.Context, w *worker) opResult {
	m := r.cfg.Mix
	switch n := w.rng.IntN(m.total()); {
	case n < m.Get:
		return r.get(ctx, w)
	case n < m.Get+m.Put:
		return r.put(ctx, w)
	default:
		return r.cas(ctx, w)
	}
}

// lock acquires and releases one of the lock names with the worker's session.
func (r *runner) lock(ctx context.Context, w *worker) opResult {
	name := r.cfg.KeyPrefix + locksDir + strconv.Itoa(w.rng.IntN(r.cfg.Locks))
	m := concurrency.NewMutex(w.session, name)
	if err := m.Lock(ctx); err != nil {
		return opResult{kind: "lock", err: fmt.Errorf("lock: %w", err)}
	}
	if err := m.Unlock(ctx); err != nil {
		return opResult{kind: "lock", err: fmt.Errorf("unlock: %w", err)}
	}
	return opResult{kind: "lock"}
}

func (r *runner) openSessions(ctx context.Context, ws []*worker) error {
	ttl := int(r.cfg.LeaseTTL / time.Second)
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() {
			w.session, errs[i] = concurrency.NewSession(w.cli, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			closeSessions(ws)
			return fmt.Errorf("bench: open lock sessions: %w", err)
		}
	}
	return nil
}

// closeSessions ends the workers' sessions, revoking their leases.
func closeSessions(ws []*worker) {
	var wg sync.WaitGroup
	for _, w := range ws {
		if w.session != nil {
			wg.Go(func() { _ = w.session.Close() })
		}
	}
	wg.Wait()
}

// lease grants a lease, keeps it alive once and revokes it.
func (r *runner) lease(ctx context.Context, w *worker) opResult {
	g, err := w.cli.Grant(ctx, int64(r.cfg.LeaseTTL/time.Second))
	if err != nil {
		return opResult{kind: "lease", err: fmt.Errorf("grant: %w", err)}
	}
	if _, err := w.cli.KeepAliveOnce(ctx, g.ID); err != nil {
		return opResult{kind: "lease", err: fmt.Errorf("keepalive: %w", err)}
	}
	if _, err := w.cli.Revoke(ctx, g.ID); err != nil {
		return opResult{kind: "lease", err: fmt.Errorf("revoke: %w", err)}
	}
	return opResult{kind: "lease"}
}

// maxLoadFailures is how many failures in a row on one worker stop the Load
// workload: the servers are then unusable, and every further operation
// would wait out its timeout.
const maxLoadFailures = 3

// loadKeys writes every key of the key space once, with the workers taking
// the next unwritten key in turn. As a preload (record false) it stops at the
// first failure; as the Load workload it records every operation and stops
// when a worker fails maxLoadFailures times in a row. It returns why it
// stopped early.
func (r *runner) loadKeys(ctx context.Context, ws []*worker, record bool) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	allowed := 1
	if record {
		allowed = maxLoadFailures
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			failures := 0
			for {
				i := int(next.Add(1) - 1)
				if i >= r.cfg.Keys || ctx.Err() != nil {
					return
				}
				opCtx, opCancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
				start := time.Now()
				_, err := w.cli.Put(opCtx, KeyName(r.cfg.KeyPrefix, i), r.value)
				end := time.Now()
				opCancel()
				if ctx.Err() != nil {
					return // stopped by another worker or the caller: not this put's failure
				}
				if record {
					r.record(opResult{kind: "put", err: err}, start, end)
				}
				if err == nil {
					failures = 0
					continue
				}
				if failures++; failures >= allowed {
					cancel(fmt.Errorf("%d failed puts in a row, the last: %w", failures, err))
					return
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// preload writes the key space so that reads find values.
func (r *runner) preload(ctx context.Context) error {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "%s: writing %d keys first\n", r.cfg.Workload, r.cfg.Keys)
	}
	if err := r.loadKeys(ctx, r.newWorkers(), false); err != nil {
		return fmt.Errorf("bench: preload: %w", err)
	}
	return nil
}

// runLoad runs the Load workload: the window is the whole load.
func (r *runner) runLoad(ctx context.Context) (*Result, error) {
	ws := r.newWorkers()
	r.t0 = time.Now()
	cpu0, cpuErr := ProcessCPU(r.cfg.CPUPIDs)
	r.winStart.Store(0)
	stopProgress := r.startProgress()
	err := r.loadKeys(ctx, ws, true)
	end := time.Since(r.t0)
	r.winEnd.Store(int64(end))
	stopProgress()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("bench: load stopped: %w", err)
	}
	cpu1, err := ProcessCPU(r.cfg.CPUPIDs)
	res := r.newResult(end)
	r.setCPU(res, cpu1-cpu0, errors.Join(cpuErr, err))
	r.finish(res)
	return res, nil
}
