package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/meshkv/meshkv/chaos/check"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrStopped is returned by AddEndpoint and RemoveEndpoint after Stop.
var ErrStopped = errors.New("workload: stopped")

// Workload is a running set of workers and their recordings.
type Workload struct {
	cfg Config
	log *slog.Logger
	t0  time.Time

	ctx    context.Context // cancelled by Stop: ends every worker
	cancel context.CancelFunc
	wg     sync.WaitGroup // key-value and lock workers

	watchCtx    context.Context // cancelled by Close: ends the watcher
	watchCancel context.CancelFunc
	watchWG     sync.WaitGroup
	reconnc     chan struct{} // asks the watcher to move to the next endpoint

	mu        sync.Mutex
	ops       []check.Op
	acqs      []check.Acquisition
	guarded   []check.GuardedWrite
	lockNote  string // why the lock check cannot run, if it cannot
	lockStats LockStats
	watch     watchRecord
	pinned    map[string]*pinnedWorker // endpoint -> its pinned worker
	order     []string                 // endpoints in the order added
	multi     []*clientv3.Client
	clients   []*clientv3.Client // every client, for Close
	nextID    int                // next client number
	stopped   bool
	closed    bool
}

// LockStats counts what the lock workers did.
type LockStats struct {
	Attempts  int `json:"attempts"`
	Acquired  int `json:"acquired"`
	Failed    int `json:"failed"`
	Sessions  int `json:"sessions"`
	Uncertain int `json:"uncertain_guarded_writes"`
}

// pinnedWorker is a key-value worker whose client talks to one endpoint.
type pinnedWorker struct {
	cli     *clientv3.Client
	cancel  context.CancelFunc
	removed bool
}

// Start creates the clients and starts every worker. It does not block on
// the network: clients connect lazily.
func Start(cfg Config) (*Workload, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	w := &Workload{cfg: cfg, log: cfg.Logger, t0: time.Now(), pinned: map[string]*pinnedWorker{}, reconnc: make(chan struct{}, 1)}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.watchCtx, w.watchCancel = context.WithCancel(context.Background())
	for _, ep := range cfg.Endpoints {
		if err := w.AddEndpoint(ep); err != nil {
			w.Close()
			return nil, err
		}
	}
	for range cfg.MultiClients {
		cli, err := w.newClient(cfg.Endpoints...)
		if err != nil {
			w.Close()
			return nil, err
		}
		w.mu.Lock()
		w.multi = append(w.multi, cli)
		id := w.takeID()
		w.mu.Unlock()
		w.wg.Go(func() { w.kvWorker(w.ctx, id, cli, "all") })
	}
	for i := range cfg.LockWorkers {
		cli, err := w.newClient(cfg.Endpoints...)
		if err != nil {
			w.Close()
			return nil, err
		}
		w.mu.Lock()
		w.multi = append(w.multi, cli)
		w.mu.Unlock()
		w.wg.Go(func() { w.lockWorker(w.ctx, i, cli) })
	}
	if !cfg.NoWatch {
		w.watchWG.Go(func() { w.watcher(w.watchCtx) })
	}
	return w, nil
}

// Now is the time since the workload started, the clock of every recorded
// operation.
func (w *Workload) Now() time.Duration { return time.Since(w.t0) }

func (w *Workload) newClient(endpoints ...string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		Logger:               zap.NewNop(),
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("workload: client for %v: %w", endpoints, err)
	}
	w.mu.Lock()
	w.clients = append(w.clients, cli)
	w.mu.Unlock()
	return cli, nil
}

// takeID hands out a client number. Called with w.mu held.
func (w *Workload) takeID() int {
	id := w.nextID
	w.nextID++
	return id
}

// AddEndpoint starts a key-value worker pinned to a new node's endpoint and
// adds the endpoint to the balancing clients.
func (w *Workload) AddEndpoint(ep string) error {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return ErrStopped
	}
	if _, dup := w.pinned[ep]; dup {
		w.mu.Unlock()
		return nil
	}
	w.mu.Unlock()
	cli, err := w.newClient(ep)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(w.ctx)
	w.mu.Lock()
	w.pinned[ep] = &pinnedWorker{cli: cli, cancel: cancel}
	w.order = append(w.order, ep)
	id := w.takeID()
	multi := slices.Clone(w.multi)
	all := w.liveEndpoints()
	w.mu.Unlock()
	for _, m := range multi {
		m.SetEndpoints(all...)
	}
	w.wg.Go(func() { w.kvWorker(ctx, id, cli, ep) })
	return nil
}

// RemoveEndpoint stops the worker pinned to ep (a node that was killed) and
// takes ep out of the balancing clients.
func (w *Workload) RemoveEndpoint(ep string) error {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return ErrStopped
	}
	p, ok := w.pinned[ep]
	if ok {
		p.cancel()
		p.removed = true
	}
	multi := slices.Clone(w.multi)
	all := w.liveEndpoints()
	w.mu.Unlock()
	if !ok {
		return fmt.Errorf("workload: unknown endpoint %q", ep)
	}
	for _, m := range multi {
		m.SetEndpoints(all...)
	}
	return nil
}

// liveEndpoints lists endpoints whose worker was not removed. Called with
// w.mu held.
func (w *Workload) liveEndpoints() []string {
	var out []string
	for _, ep := range w.order {
		if !w.pinned[ep].removed {
			out = append(out, ep)
		}
	}
	return out
}

// ReconnectWatch makes the watcher drop its stream and resume, from its last
// revision + 1, on the next endpoint.
func (w *Workload) ReconnectWatch() {
	select {
	case w.reconnc <- struct{}{}:
	default:
	}
}

// Stop ends the key-value and lock workers and waits for them (the lock
// workers close their sessions). The watcher keeps running until Close, so
// that Collect can wait for it to catch up. Stop is idempotent.
func (w *Workload) Stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
}

// Close stops everything, the watcher included, and closes the clients. It
// is idempotent.
func (w *Workload) Close() {
	w.Stop()
	w.watchCancel()
	w.watchWG.Wait()
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	clients := w.clients
	w.mu.Unlock()
	for _, c := range clients {
		_ = c.Close()
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// errCode is the gRPC code of a client error, seeing through etcd's typed
// errors.
func errCode(err error) codes.Code {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return codes.DeadlineExceeded
	}
	if errors.Is(err, context.Canceled) {
		return codes.Canceled
	}
	return status.Code(err)
}

// writeOutcome classifies a failed write: refused by validation means it
// certainly had no effect; anything else (timeouts, Unavailable, a lost
// connection) leaves its fate unknown.
func writeOutcome(err error) check.Outcome {
	switch errCode(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange, codes.ResourceExhausted,
		codes.Unimplemented, codes.PermissionDenied, codes.Unauthenticated:
		return check.Failed
	}
	return check.Indeterminate
}

// isUnimplemented reports whether err says the service does not exist.
func isUnimplemented(err error) bool { return errCode(err) == codes.Unimplemented }

func (w *Workload) record(op check.Op) {
	w.mu.Lock()
	w.ops = append(w.ops, op)
	w.mu.Unlock()
}

// kvWorker issues random key-value operations until ctx ends.
func (w *Workload) kvWorker(ctx context.Context, id int, cli *clientv3.Client, endpoint string) {
	rng := rand.New(rand.NewPCG(uint64(w.cfg.Seed), uint64(id)))
	last := map[string]string{} // key -> last value this worker saw
	for seq := 0; ctx.Err() == nil; seq++ {
		key := fmt.Sprintf("%sk%d", DefaultKeyPrefix, rng.IntN(w.cfg.Keys))
		op := check.Op{Client: id, Key: key, Endpoint: endpoint}
		switch r := rng.IntN(100); {
		case r < 40:
			op.Kind = check.Get
		case r < 70:
			op.Kind = check.Put
		case r < 85:
			op.Kind = check.CAS
		default:
			op.Kind = check.Delete
		}
		if op.Kind == check.Put || op.Kind == check.CAS {
			op.Value = fmt.Sprintf("c%d-%d", id, seq)
		}
		if op.Kind == check.CAS {
			op.Expect = last[key]
			if op.Expect == "" {
				op.Expect = "none"
			}
		}
		w.do(ctx, cli, &op)
		if ctx.Err() != nil && op.Outcome != check.OK {
			// Cut short by Stop: a write may still have happened.
			if op.IsWrite() {
				op.Outcome = check.Indeterminate
				w.record(op)
			}
			return
		}
		w.record(op)
		if op.Outcome == check.OK {
			switch {
			case op.Kind == check.Get && op.Found:
				last[key] = op.Got
			case op.Kind == check.Put, op.Kind == check.CAS && op.Succeeded:
				last[key] = op.Value
			}
		}
		pause := w.cfg.Pause
		if op.Outcome != check.OK {
			pause = max(pause, 100*time.Millisecond) // an unreachable node: do not pile up uncertain writes
		}
		if !sleep(ctx, pause) {
			return
		}
	}
}

// do performs op and fills in its times and outcome.
func (w *Workload) do(ctx context.Context, cli *clientv3.Client, op *check.Op) {
	cctx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
	defer cancel()
	op.Call = w.Now()
	var err error
	switch op.Kind {
	case check.Get:
		var resp *clientv3.GetResponse
		var opts []clientv3.OpOption
		if w.cfg.SerializableReads && op.Endpoint != "final" {
			opts = append(opts, clientv3.WithSerializable())
		}
		if resp, err = cli.Get(cctx, op.Key, opts...); err == nil {
			op.Rev = resp.Header.Revision
			if len(resp.Kvs) > 0 {
				op.Found, op.Got, op.ModRev = true, string(resp.Kvs[0].Value), resp.Kvs[0].ModRevision
			}
		}
	case check.Put:
		var resp *clientv3.PutResponse
		if resp, err = cli.Put(cctx, op.Key, op.Value); err == nil {
			op.Rev = resp.Header.Revision
		}
	case check.Delete:
		var resp *clientv3.DeleteResponse
		if resp, err = cli.Delete(cctx, op.Key); err == nil {
			op.Rev, op.Deleted = resp.Header.Revision, resp.Deleted
		}
	case check.CAS:
		var resp *clientv3.TxnResponse
		resp, err = cli.Txn(cctx).
			If(clientv3.Compare(clientv3.Value(op.Key), "=", op.Expect)).
			Then(clientv3.OpPut(op.Key, op.Value)).
			Commit()
		if err == nil {
			op.Rev, op.Succeeded = resp.Header.Revision, resp.Succeeded
		}
	}
	op.Return = w.Now()
	switch {
	case err == nil:
		op.Outcome = check.OK
	case op.Kind == check.Get:
		op.Outcome = check.Failed
		op.Err = err.Error()
	default:
		op.Outcome = writeOutcome(err)
		op.Err = err.Error()
	}
}
