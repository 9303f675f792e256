package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ErrNoClients is returned by Run when it is given no client.
var ErrNoClients = errors.New("bench: no clients")

// maxErrorSamples is how many distinct error messages a run keeps.
const maxErrorSamples = 5

// Run runs cfg's workload and returns what it measured. The workers share
// clients round-robin (worker i uses clients[i%len(clients)]), so
// len(clients) is the number of connections. Run writes the key space first
// for Get, Txn and Mixed (unless cfg.SkipPreload), sets up lock sessions and
// watchers, runs Warmup and then the measured window, and waits up to
// cfg.OpTimeout for operations in flight before it returns.
//
// Failed operations are counted and sampled in the Result, not returned.
// Run returns an error for a bad configuration, when ctx ends, when setup
// (preload, sessions, watchers) fails, or when a process of cfg.CPUPIDs or
// cfg.RSSPIDs cannot be read at the start.
func Run(ctx context.Context, cfg Config, clients []*clientv3.Client) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(clients) == 0 {
		return nil, ErrNoClients
	}
	cfg = cfg.withDefaults()
	if _, err := ProcessCPU(cfg.CPUPIDs); err != nil {
		return nil, err
	}
	if _, err := ProcessRSS(cfg.RSSPIDs); err != nil {
		return nil, err
	}
	r := newRunner(cfg, clients)
	return r.run(ctx)
}

// runner is the state of one Run. Workers, watchers and the progress printer
// are goroutines of run, which waits for all of them before it returns.
type runner struct {
	cfg     Config
	clients []*clientv3.Client
	value   string // the value every put writes (Watch builds its own)

	t0       time.Time    // the run's time origin
	winStart atomic.Int64 // ns since t0 when the window opened; MaxInt64 before
	winEnd   atomic.Int64 // ns since t0 when it closed; MaxInt64 before
	stopc    chan struct{}

	hist      *Histogram            // the workload's measure
	kinds     map[string]*Histogram // per operation kind; fixed before workers start
	opsHist   bool                  // whether operation latencies go to hist (not for Watch)
	ops       atomic.Uint64         // successful operations in the window
	conflicts atomic.Uint64
	errs      atomic.Uint64 // failed operations in the window
	completed atomic.Uint64 // all finished operations, for progress
	failed    atomic.Uint64 // all failed operations, for progress
	samples   errorSamples

	// Watch bookkeeping.
	watchWrites atomic.Uint64 // successful writes sent in the window
	lastWrite   atomic.Int64  // highest revision written
	events      atomic.Uint64 // events received for writes sent in the window
}

func newRunner(cfg Config, clients []*clientv3.Client) *runner {
	r := &runner{
		cfg:     cfg,
		clients: clients,
		value:   randomValue(cfg.ValueSize, cfg.Seed),
		stopc:   make(chan struct{}),
		hist:    NewHistogram(),
		kinds:   map[string]*Histogram{},
		opsHist: cfg.Workload != Watch,
	}
	r.winStart.Store(math.MaxInt64)
	r.winEnd.Store(math.MaxInt64)
	switch cfg.Workload {
	case Mixed:
		for _, k := range []string{"get", "put", "txn"} {
			r.kinds[k] = NewHistogram()
		}
	case Watch:
		r.kinds["put"] = NewHistogram()
	}
	return r
}

// randomValue returns n printable pseudo-random bytes.
func randomValue(n int, seed uint64) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// worker is one concurrent client of the run.
type worker struct {
	id      int
	cli     *clientv3.Client
	rng     *rand.Rand
	session *concurrency.Session // Lock only
}

func (r *runner) newWorkers() []*worker {
	ws := make([]*worker, r.cfg.Clients)
	for i := range ws {
		ws[i] = &worker{
			id:  i,
			cli: r.clients[i%len(r.clients)],
			rng: rand.New(rand.NewPCG(r.cfg.Seed, uint64(i))),
		}
	}
	return ws
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	if cfg.Workload == Load {
		return r.runLoad(ctx)
	}
	if !cfg.SkipPreload && (cfg.Workload == Get || cfg.Workload == Txn || cfg.Workload == Mixed) {
		if err := r.preload(ctx); err != nil {
			return nil, err
		}
	}
	ws := r.newWorkers()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	if cfg.Workload == Lock {
		if err := r.openSessions(runCtx, ws); err != nil {
			return nil, err
		}
		defer closeSessions(ws)
	}
	r.t0 = time.Now()
	var watchers *watchSet
	if cfg.Workload == Watch {
		var err error
		if watchers, err = r.startWatchers(runCtx); err != nil {
			return nil, err
		}
		defer watchers.close()
	}

	op := r.opFunc()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() { r.work(runCtx, w, op) })
	}
	stopProgress := r.startProgress()
	defer stopProgress()
	var scr *scraper
	stopScraping := func() {}
	if len(cfg.ScrapeURLs) > 0 {
		scr = newScraper(cfg.ScrapeURLs, cfg.ScrapeInterval)
		stopScraping = scr.start(runCtx)
	}

	res, err := r.measure(ctx)
	stopScraping()
	close(r.stopc)
	r.drain(&wg, cancel)
	if err != nil {
		return nil, err
	}
	if scr != nil {
		res.Scrapes = scr.stats()
	}
	if watchers != nil {
		watchers.waitFor(r.lastWrite.Load(), cfg.OpTimeout)
		res.Events = r.events.Load()
		if want := r.watchWrites.Load() * uint64(cfg.Watchers); want > res.Events {
			res.EventsMissing = want - res.Events
		}
	}
	r.finish(res)
	return res, nil
}

// measure waits out the warmup and the window, and reads the servers' CPU
// time at both ends of the window.
func (r *runner) measure(ctx context.Context) (*Result, error) {
	if err := sleepCtx(ctx, r.cfg.Warmup); err != nil {
		return nil, err
	}
	cpu0, cpuErr := ProcessCPU(r.cfg.CPUPIDs)
	start := time.Since(r.t0)
	r.winStart.Store(int64(start))
	if err := sleepCtx(ctx, r.cfg.Duration); err != nil {
		return nil, err
	}
	end := time.Since(r.t0)
	r.winEnd.Store(int64(end))
	cpu1, err := ProcessCPU(r.cfg.CPUPIDs)
	cpuErr = errors.Join(cpuErr, err)
	res := r.newResult(end - start)
	r.setCPU(res, cpu1-cpu0, cpuErr)
	return res, nil
}

// drain waits for the workers to finish their operations in flight, for at
// most OpTimeout, then cancels the rest.
func (r *runner) drain(wg *sync.WaitGroup, cancel context.CancelFunc) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(r.cfg.OpTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		cancel()
		<-done
	}
}

func (r *runner) newResult(window time.Duration) *Result {
	cfg := r.cfg
	res := &Result{
		Workload:     cfg.Workload,
		Clients:      cfg.Clients,
		Conns:        len(r.clients),
		Keys:         cfg.Keys,
		ValueSize:    cfg.ValueSize,
		Serializable: cfg.Serializable,
		Rate:         cfg.Rate,
		Warmup:       cfg.Warmup,
		Window:       window,
	}
	switch cfg.Workload {
	case Lock:
		res.Locks = cfg.Locks
	case Watch:
		res.Watchers = cfg.Watchers
	case Mixed:
		res.Mix = cfg.Mix.String()
	case Load:
		res.Warmup = 0
	}
	return res
}

// setCPU fills in the servers' CPU use, or notes why it could not be read.
func (r *runner) setCPU(res *Result, used time.Duration, err error) {
	if len(r.cfg.CPUPIDs) == 0 {
		return
	}
	if err != nil {
		r.samples.add("server cpu: " + err.Error())
		return
	}
	res.CPU = &CPUUsage{PIDs: r.cfg.CPUPIDs, Time: used}
}

// finish fills in the counters, latencies, CPU per operation and RSS.
func (r *runner) finish(res *Result) {
	res.Ops = r.ops.Load()
	if res.Window > 0 {
		res.OpsPerSec = float64(res.Ops) / res.Window.Seconds()
	}
	res.Latency = r.hist.Summary()
	if len(r.kinds) > 0 {
		res.Kinds = map[string]Latency{}
		for k, h := range r.kinds {
			res.Kinds[k] = h.Summary()
		}
	}
	res.Conflicts = r.conflicts.Load()
	res.Errors = r.errs.Load()
	if res.CPU != nil && res.Ops > 0 {
		res.CPU.MsPer1000Ops = float64(res.CPU.Time) / float64(time.Millisecond) / float64(res.Ops) * 1000
	}
	if len(r.cfg.RSSPIDs) > 0 {
		if n, err := ProcessRSS(r.cfg.RSSPIDs); err != nil {
			r.samples.add("server rss: " + err.Error())
		} else {
			res.RSS = &RSSUsage{PIDs: r.cfg.RSSPIDs, Bytes: n}
		}
	}
	res.ErrorSamples = r.samples.list()
}

// work runs op until the run stops, paced when the config has a rate.
func (r *runner) work(ctx context.Context, w *worker, op opFunc) {
	var p *pacer
	if r.cfg.Rate > 0 {
		p = newPacer(r.cfg.Rate, r.cfg.Clients, w.id)
	}
	for {
		select {
		case <-r.stopc:
			return
		case <-ctx.Done():
			return
		default:
		}
		if p != nil && !p.wait(ctx, r.stopc) {
			return
		}
		opCtx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		start := time.Now()
		res := op(opCtx, w)
		end := time.Now()
		cancel()
		if ctx.Err() != nil {
			return // cancelled by the end of the run: not the server's failure
		}
		r.record(res, start, end)
	}
}

// opResult is the outcome of one operation.
type opResult struct {
	kind     string // for per-kind latencies
	conflict bool   // a CAS whose compare failed
	err      error
	sent     time.Duration // Watch: when the write was sent, since t0
	rev      int64         // Watch: the revision written
}

type opFunc func(ctx context.Context, w *worker) opResult

// inWindow reports whether a moment (since t0) falls in the measured window.
func (r *runner) inWindow(at time.Duration) bool {
	return int64(at) >= r.winStart.Load() && int64(at) <= r.winEnd.Load()
}

func (r *runner) record(res opResult, start, end time.Time) {
	in := r.inWindow(end.Sub(r.t0))
	if res.err != nil {
		r.failed.Add(1)
		r.samples.add(res.err.Error())
		if in {
			r.errs.Add(1)
		}
		return
	}
	r.completed.Add(1)
	if r.cfg.Workload == Watch {
		raise(&r.lastWrite, res.rev)
		if r.inWindow(res.sent) {
			r.watchWrites.Add(1)
		}
	}
	if !in {
		return
	}
	lat := end.Sub(start)
	if res.conflict {
		r.conflicts.Add(1)
	} else {
		r.ops.Add(1)
	}
	if r.opsHist {
		r.hist.Record(lat)
	}
	if h := r.kinds[res.kind]; h != nil {
		h.Record(lat)
	}
}

// pacer spaces one worker's operations so that all workers together start
// about rate operations per second. A worker that falls behind does not
// burst to catch up.
type pacer struct {
	interval time.Duration
	next     time.Time
}

func newPacer(rate float64, workers, id int) *pacer {
	iv := time.Duration(float64(time.Second) * float64(workers) / rate)
	return &pacer{interval: iv, next: time.Now().Add(iv * time.Duration(id) / time.Duration(workers))}
}

// wait sleeps until the next slot; false when the run stops first.
func (p *pacer) wait(ctx context.Context, stopc <-chan struct{}) bool {
	now := time.Now()
	if d := p.next.Sub(now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-stopc:
			return false
		case <-ctx.Done():
			return false
		}
	} else if -d > p.interval {
		p.next = now // behind: restart the schedule from now
	}
	p.next = p.next.Add(p.interval)
	return true
}

// startProgress prints a progress line per interval until the returned
// function is called.
func (r *runner) startProgress() (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(r.cfg.ProgressInterval)
		defer t.Stop()
		var lastOps uint64
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				ops := r.completed.Load()
				rate := float64(ops-lastOps) / now.Sub(last).Seconds()
				lastOps, last = ops, now
				phase := ""
				switch el := now.Sub(r.t0); {
				case r.cfg.Workload == Load:
					phase = fmt.Sprintf("  %d/%d keys", ops, r.cfg.Keys)
				case int64(el) < r.winStart.Load():
					phase = "  (warmup)"
				}
				fmt.Fprintf(r.cfg.Progress, "%s %4ds  %s ops/s  done %d  errors %d%s\n",
					r.cfg.Workload, int(now.Sub(r.t0).Round(time.Second)/time.Second),
					FormatRate(rate), ops, r.failed.Load(), phase)
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// errorSamples keeps the first few distinct error messages and counts them.
type errorSamples struct {
	mu      sync.Mutex
	samples []ErrorSample
}

func (s *errorSamples) add(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.samples {
		if s.samples[i].Message == msg {
			s.samples[i].Count++
			return
		}
	}
	if len(s.samples) < maxErrorSamples {
		s.samples = append(s.samples, ErrorSample{Message: msg, Count: 1})
	}
}

func (s *errorSamples) list() []ErrorSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ErrorSample(nil), s.samples...)
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
