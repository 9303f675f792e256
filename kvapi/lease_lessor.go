package kvapi

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// Lessor tuning that is not worth a Config field.
const (
	// maxRevokeBatch bounds the expiry revokes proposed at once.
	maxRevokeBatch = 64
	// maxCheckpointBatch bounds the leases in one checkpoint proposal.
	maxCheckpointBatch = 1000
	// lessorProposeTimeout bounds each proposal the lessor makes; a failed
	// one is retried on a later pass.
	lessorProposeTimeout = 5 * time.Second
	// lessorRetryInterval is how soon the lessor looks again after a failed
	// revoke, or, on a member that is not the leader, how often it checks
	// whether it became leader while some lease is past its deadline.
	lessorRetryInterval = 100 * time.Millisecond
)

// lessor keeps a local deadline for every lease, and on the raft leader
// revokes the leases past their deadline and checkpoints the remaining TTLs.
//
// Deadlines are local monotonic times, set when this member applies an entry:
// a grant or renewal sets now + TTL, a checkpoint lowers the deadline to
// now + remaining (never raises it), a snapshot restore sets now + the
// checkpointed remainder (or the full TTL). A member that becomes leader thus
// continues each countdown from what it last applied.
//
// The apply goroutine calls leaseApplied and leasesRestored; RPC handlers
// call remaining; run (the background goroutine, started by Server.Run) is
// the only one that proposes. All state is guarded by mu, which is never held
// while proposing.
type lessor struct {
	s     *Server
	kickc chan struct{} // wakes run when a deadline may have moved earlier

	warnOnce sync.Once

	mu        sync.Mutex
	cfg       leaseTiming
	attached  bool // a state machine reports to this lessor
	leases    map[int64]*leaseDeadline
	queue     leaseQueue // leases by deadline
	lastIndex uint64     // index of the last lease entry applied (the basis)
}

// leaseDeadline is the lessor's record of one lease.
type leaseDeadline struct {
	id       int64
	ttl      int64 // granted TTL, seconds
	deadline time.Time
	pos      int // position in the queue
}

func newLessor(s *Server) *lessor {
	return &lessor{
		s:      s,
		kickc:  make(chan struct{}, 1),
		cfg:    LeaseConfig{}.timing(),
		leases: make(map[int64]*leaseDeadline),
	}
}

func (l *lessor) kick() {
	select {
	case l.kickc <- struct{}{}:
	default:
	}
}

func (l *lessor) timing() leaseTiming {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

func (l *lessor) setTiming(t leaseTiming) {
	l.mu.Lock()
	l.cfg = t
	l.mu.Unlock()
	l.kick()
}

// attach marks the lessor as fed by a state machine and adopts the leases
// the store already holds (keeping those it knows).
func (l *lessor) attach() {
	infos := l.s.store.Leases()
	now := time.Now()
	l.mu.Lock()
	l.attached = true
	for _, info := range infos {
		if _, ok := l.leases[info.ID]; !ok {
			l.add(info.ID, info.TTL, now.Add(restoredRemaining(info)))
		}
	}
	l.mu.Unlock()
	l.kick()
}

func (l *lessor) isAttached() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.attached
}

// restoredRemaining is the remaining time a member assumes for a lease it
// learns from the store rather than from applying its entries.
func restoredRemaining(info mvcc.LeaseInfo) time.Duration {
	if info.RemainingTTL > 0 {
		return time.Duration(info.RemainingTTL) * time.Second
	}
	return time.Duration(info.TTL) * time.Second
}

// add records a lease; the caller holds mu.
func (l *lessor) add(id, ttl int64, deadline time.Time) {
	if ld, ok := l.leases[id]; ok {
		ld.ttl = ttl
		l.setDeadline(ld, deadline)
		return
	}
	ld := &leaseDeadline{id: id, ttl: ttl, deadline: deadline}
	l.leases[id] = ld
	heap.Push(&l.queue, ld)
}

// setDeadline moves a lease's deadline; the caller holds mu.
func (l *lessor) setDeadline(ld *leaseDeadline, deadline time.Time) {
	ld.deadline = deadline
	heap.Fix(&l.queue, ld.pos)
}

// forget drops a lease; the caller holds mu.
func (l *lessor) forget(id int64) {
	ld, ok := l.leases[id]
	if !ok {
		return
	}
	delete(l.leases, id)
	heap.Remove(&l.queue, ld.pos)
}

func (l *lessor) leaseApplied(index uint64, changes []leaseChange) {
	now := time.Now()
	earlier := false
	l.mu.Lock()
	l.lastIndex = max(l.lastIndex, index)
	for _, c := range changes {
		switch c.kind {
		case leaseGranted:
			l.add(c.id, c.secs, now.Add(time.Duration(c.secs)*time.Second))
			earlier = true
		case leaseRenewed:
			if ld, ok := l.leases[c.id]; ok {
				l.setDeadline(ld, now.Add(time.Duration(ld.ttl)*time.Second))
			} else {
				l.add(c.id, c.secs, now.Add(time.Duration(c.secs)*time.Second))
				earlier = true
			}
		case leaseCheckpointed:
			d := now.Add(time.Duration(c.secs) * time.Second)
			if ld, ok := l.leases[c.id]; ok && d.Before(ld.deadline) {
				l.setDeadline(ld, d)
				earlier = true
			}
		case leaseRevoked:
			l.forget(c.id)
		}
	}
	l.mu.Unlock()
	if earlier {
		l.kick()
	}
}

func (l *lessor) leasesRestored(infos []mvcc.LeaseInfo) {
	now := time.Now()
	l.mu.Lock()
	l.leases = make(map[int64]*leaseDeadline, len(infos))
	l.queue = l.queue[:0]
	for _, info := range infos {
		l.add(info.ID, info.TTL, now.Add(restoredRemaining(info)))
		l.lastIndex = max(l.lastIndex, info.GrantedAt, info.RenewedAt)
	}
	l.mu.Unlock()
	l.kick()
}

// remaining returns the time left before lease id's deadline on this member
// and its granted TTL; ok is false if the lessor does not know the lease.
func (l *lessor) remaining(id int64) (left time.Duration, ttl int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ld, ok := l.leases[id]
	if !ok {
		return 0, 0, false
	}
	return time.Until(ld.deadline), ld.ttl, true
}

// isLeader reports whether this member leads the raft group.
func (l *lessor) isLeader() bool {
	leader, _ := l.s.cluster.LeaderTerm()
	return leader != 0 && leader == l.s.cluster.MemberID()
}

// run is the lessor loop: it sleeps until the nearest deadline (plus the
// margin), the next checkpoint, or a kick, and on the leader revokes what
// expired and checkpoints the rest. It returns when ctx ends, after its
// proposals have returned.
func (l *lessor) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	nextCheckpoint := time.Now().Add(l.timing().checkpointInterval)
	for {
		wait := l.pass(ctx, &nextCheckpoint)
		if wait < 0 {
			wait = 0
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-l.kickc:
		}
	}
}

// pass does one round of the lessor's work and returns how long to sleep.
func (l *lessor) pass(ctx context.Context, nextCheckpoint *time.Time) time.Duration {
	if ctx.Err() != nil {
		return 0
	}
	leader := l.isLeader()
	now := time.Now()
	if leader {
		if ids, basis := l.expired(now); len(ids) > 0 {
			if !l.revoke(ctx, ids, basis) {
				return lessorRetryInterval
			}
			return 0 // look again at once: there may be more
		}
	}
	t := l.timing()
	if !now.Before(*nextCheckpoint) {
		if leader {
			l.checkpoint(ctx, now)
		}
		*nextCheckpoint = time.Now().Add(t.checkpointInterval)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) == 0 {
		return time.Hour // nothing to do until a grant kicks
	}
	due := l.queue[0].deadline.Add(t.revokeMargin)
	wait := min(time.Until(due), time.Until(*nextCheckpoint))
	if !leader && !now.Before(due) {
		// Expired but not ours to revoke: check again soon in case
		// leadership comes here.
		wait = lessorRetryInterval
	}
	return wait
}

// expired returns up to maxRevokeBatch leases past deadline + margin, and the
// basis for revoking them.
func (l *lessor) expired(now time.Time) ([]int64, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cutoff := now.Add(-l.cfg.revokeMargin)
	var ids []int64
	// Walk the heap, pruning subtrees whose root is not yet due.
	var walk func(i int)
	walk = func(i int) {
		if i >= len(l.queue) || len(ids) >= maxRevokeBatch || l.queue[i].deadline.After(cutoff) {
			return
		}
		ids = append(ids, l.queue[i].id)
		walk(2*i + 1)
		walk(2*i + 2)
	}
	walk(0)
	return ids, l.lastIndex
}

// revoke proposes expiry revokes for ids, all at once, and waits for them.
// It reports whether every proposal reached the log.
func (l *lessor) revoke(ctx context.Context, ids []int64, basis uint64) bool {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
	)
	for _, id := range ids {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, lessorProposeTimeout)
			defer cancel()
			_, err := l.propose(pctx, &pb.InternalRaftRequest{
				Header:      &pb.RequestHeader{ID: basis},
				LeaseRevoke: &pb.LeaseRevokeRequest{ID: id},
			})
			switch {
			case err == nil:
				l.s.leaseCounts.expired.Add(1)
			case errors.Is(err, mvcc.ErrLeaseNotFound):
				// Revoked by someone else; drop a stale record.
				l.mu.Lock()
				l.forget(id)
				l.mu.Unlock()
			case errors.Is(err, errLeaseRenewed):
				// A renewal won the race; its apply moved the deadline.
			default:
				l.s.cfg.Logger.Warn("kvapi: lease expiry revoke failed", "lease", id, "err", err)
				mu.Lock()
				failed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed == 0
}

// propose replicates a request of the lessor's own and returns what applying
// it returned on this member, with the store's errors unmapped.
func (l *lessor) propose(ctx context.Context, r *pb.InternalRaftRequest) (any, error) {
	data, err := proto.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("kvapi: encode lease request: %w", err)
	}
	v, err := l.s.rep.Propose(ctx, data)
	if err != nil {
		return nil, err
	}
	res, ok := v.(*result)
	if !ok {
		return nil, fmt.Errorf("kvapi: unexpected apply result %T", v)
	}
	return res.resp, res.err
}

// checkpoint proposes the remaining TTLs of the leases that have run down
// some of their TTL, in batches.
func (l *lessor) checkpoint(ctx context.Context, now time.Time) {
	l.mu.Lock()
	basis := l.lastIndex
	cps := make([]*pb.LeaseCheckpoint, 0, len(l.leases))
	for _, ld := range l.leases {
		left := ld.deadline.Sub(now)
		if left <= 0 {
			continue // expired: revoke, not checkpoint
		}
		secs := int64((left + time.Second - 1) / time.Second) // round up: never promise less
		if secs >= ld.ttl {
			continue // nothing run down yet
		}
		cps = append(cps, &pb.LeaseCheckpoint{ID: ld.id, Remaining_TTL: secs})
	}
	l.mu.Unlock()
	slices.SortFunc(cps, func(a, b *pb.LeaseCheckpoint) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	for len(cps) > 0 && ctx.Err() == nil {
		n := min(len(cps), maxCheckpointBatch)
		pctx, cancel := context.WithTimeout(ctx, lessorProposeTimeout)
		_, err := l.propose(pctx, &pb.InternalRaftRequest{
			Header:          &pb.RequestHeader{ID: basis},
			LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: cps[:n]},
		})
		cancel()
		if err != nil {
			l.s.cfg.Logger.Warn("kvapi: lease checkpoint failed", "leases", n, "err", err)
			return
		}
		cps = cps[n:]
	}
}

// leaseQueue is a min-heap of leases by deadline.
type leaseQueue []*leaseDeadline

var _ heap.Interface = (*leaseQueue)(nil)

func (q leaseQueue) Len() int           { return len(q) }
func (q leaseQueue) Less(i, j int) bool { return q[i].deadline.Before(q[j].deadline) }
func (q leaseQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].pos = i
	q[j].pos = j
}
func (q *leaseQueue) Push(x any) {
	ld := x.(*leaseDeadline)
	ld.pos = len(*q)
	*q = append(*q, ld)
}
func (q *leaseQueue) Pop() any {
	old := *q
	ld := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return ld
}
