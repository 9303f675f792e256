// These tests hold a 3-node cluster to the lock store's multi-node promises:
// lease expiry timing (never early, never much late) through keepalives from
// any member, across leader changes and under leadership churn; mutual
// exclusion and fencing tokens of etcd's lock recipe and Node.Lock across
// members, including holders that die; watchers that see every committed
// event once and in order through a leader crash, and that cannot slow writes
// by not reading; and, after each scenario, equal HashKV on every live member.
// They run on the in-memory network (startMemCluster), under -race.

package meshkv_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/kvapi"
)

// lsLeaveTimeout bounds the graceful leave when the test closes a node: a
// killed node cannot leave, and the default would make every cleanup wait 5 s.
const lsLeaveTimeout = 300 * time.Millisecond

// startLockStore starts a 3-node cluster on the in-memory network. With tcp,
// every node also serves clients on a free loopback port.
func startLockStore(t *testing.T, seed uint64, tcp bool) *testCluster {
	t.Helper()
	return startMemCluster(t, seed, 3, 3, func(i int, c *meshkv.Config) {
		c.LeaveTimeout = lsLeaveTimeout
		if tcp {
			c.ListenClientURLs = []string{"http://127.0.0.1:0"}
		}
	})
}

// others returns the indexes of the nodes that are neither killed nor in
// except, in order.
func (tc *testCluster) others(except ...int) []int {
	var out []int
	for i := range tc.nodes {
		if !tc.killed[i] && !slices.Contains(except, i) {
			out = append(out, i)
		}
	}
	return out
}

// liveLeader waits for a leader among the nodes not killed.
func (tc *testCluster) liveLeader() int {
	tc.t.Helper()
	return tc.leader(keys(tc.killed)...)
}

// leaderNow returns the index of the live node that reports itself leader,
// or -1; unlike leader it neither waits nor fails the test, so a background
// goroutine may call it.
func (tc *testCluster) leaderNow() int {
	for _, i := range tc.others() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := tc.nodes[i].Client().Status(ctx, "x")
		cancel()
		if err == nil && st.Leader == tc.nodes[i].ID() {
			return i
		}
	}
	return -1
}

// moveLeader hands leadership from the current leader to node to and waits
// until to leads.
func (tc *testCluster) moveLeader(to int) {
	tc.t.Helper()
	waitFor(tc.t, 10*time.Second, fmt.Sprintf("n%d to lead", to), func() bool {
		l := tc.leaderNow()
		if l == to {
			return true
		}
		if l >= 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, _ = tc.nodes[l].Client().MoveLeader(ctx, tc.nodes[to].ID())
			cancel()
		}
		return tc.leaderNow() == to
	})
}

// checkHashKV checks that every live member has the same HashKV at one
// revision, reached by all of them. The Maintenance RPC goes over each node's
// in-memory client connection.
func checkHashKV(t *testing.T, tc *testCluster) {
	t.Helper()
	live := tc.others()
	// A linearizable read fixes a revision that every member will reach.
	ctx := ctxTimeout(t, 10*time.Second)
	resp, err := tc.nodes[live[0]].Client().Get(ctx, "hashkv-barrier")
	if err != nil {
		t.Fatalf("HashKV check: read the revision: %v", err)
	}
	rev := resp.Header.Revision
	hashes := map[uint32][]int{}
	for _, i := range live {
		mc := pb.NewMaintenanceClient(tc.nodes[i].Client().ActiveConnection())
		var h *pb.HashKVResponse
		waitFor(t, 10*time.Second, fmt.Sprintf("n%d to hash revision %d", i, rev), func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			h, err = mc.HashKV(ctx, &pb.HashKVRequest{Revision: rev})
			return err == nil
		})
		if h.HashRevision != rev {
			t.Fatalf("n%d hashed revision %d, asked for %d", i, h.HashRevision, rev)
		}
		hashes[h.Hash] = append(hashes[h.Hash], i)
	}
	if len(hashes) != 1 {
		t.Fatalf("members disagree on HashKV at revision %d: hash -> members %v", rev, hashes)
	}
	t.Logf("HashKV at revision %d equal on live members %v", rev, live)
}

// deleteWatcher records when each key under a prefix is deleted, as seen by a
// watcher on one node.
type deleteWatcher struct {
	mu      sync.Mutex
	deleted map[string]time.Time
	err     error
}

func watchDeletes(t *testing.T, cli *clientv3.Client, prefix string, fromRev int64) *deleteWatcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	dw := &deleteWatcher{deleted: map[string]time.Time{}}
	wch := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(fromRev))
	go func() {
		defer close(done)
		for wr := range wch {
			now := time.Now()
			dw.mu.Lock()
			if err := wr.Err(); err != nil && dw.err == nil && ctx.Err() == nil {
				dw.err = err
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					dw.deleted[string(ev.Kv.Key)] = now
				}
			}
			dw.mu.Unlock()
		}
	}()
	return dw
}

// when returns when key was seen deleted.
func (dw *deleteWatcher) when(key string) (time.Time, bool) {
	dw.mu.Lock()
	defer dw.mu.Unlock()
	at, ok := dw.deleted[key]
	return at, ok
}

func (dw *deleteWatcher) failed() error {
	dw.mu.Lock()
	defer dw.mu.Unlock()
	return dw.err
}

// grantWithKey grants a lease of ttl seconds through cli and attaches key to
// it; it returns the lease, the revision of the put and when the grant was
// acknowledged.
func grantWithKey(t *testing.T, cli *clientv3.Client, key string, ttl int64) (clientv3.LeaseID, int64, time.Time) {
	t.Helper()
	ctx := ctxTimeout(t, 5*time.Second)
	g, err := cli.Grant(ctx, ttl)
	if err != nil {
		t.Fatalf("grant %ds: %v", ttl, err)
	}
	granted := time.Now()
	if g.TTL != ttl {
		t.Fatalf("grant %ds: granted TTL %d", ttl, g.TTL)
	}
	p, err := cli.Put(ctx, key, "leased", clientv3.WithLease(g.ID))
	if err != nil {
		t.Fatalf("put %s with lease: %v", key, err)
	}
	return g.ID, p.Header.Revision, granted
}

// TestClusterLeases: lease expiry is on time (never before the TTL has
// passed since the last keepalive acknowledgement, at most an election
// timeout after it) through keepalives sent to any member; expiry still
// happens while leadership moves every second; keepalives sent through a
// follower keep a lease alive across a leader transfer and a leader crash.
func TestClusterLeases(t *testing.T) {
	tc := startLockStore(t, 101, false)

	t.Run("ExpiryAfterLastKeepalive", func(t *testing.T) {
		l := tc.liveLeader()
		watcher := tc.nodes[(l+2)%3].Client()
		ttls := []int64{1, 2, 3, 1, 2, 3}
		type result struct {
			key   string
			ttl   time.Duration
			via   int
			ack   time.Time
			delay time.Duration
		}
		results := make([]*result, len(ttls))
		var fromRev int64
		leases := make([]clientv3.LeaseID, len(ttls))
		for i, ttl := range ttls {
			via := i % 3 // keepalives through the leader and both followers
			key := fmt.Sprintf("expiry/%d", i)
			id, rev, _ := grantWithKey(t, tc.nodes[via].Client(), key, ttl)
			leases[i] = id
			if fromRev == 0 {
				fromRev = rev
			}
			results[i] = &result{key: key, ttl: time.Duration(ttl) * time.Second, via: via}
		}
		dw := watchDeletes(t, watcher, "expiry/", fromRev)
		// Three keepalives per lease, a third of a TTL apart, then none: the
		// acknowledgement time of the last one starts the countdown.
		var wg sync.WaitGroup
		for i, r := range results {
			wg.Go(func() {
				cli := tc.nodes[r.via].Client()
				for k := range 3 {
					if k > 0 {
						time.Sleep(r.ttl / 3) // the client's keepalive cadence, not a wait for a condition
					}
					ctx, cancel := context.WithTimeout(context.Background(), r.ttl/3)
					ka, err := cli.KeepAliveOnce(ctx, leases[i])
					cancel()
					if err != nil {
						t.Errorf("%s: keepalive %d via n%d: %v", r.key, k, r.via, err)
						return
					}
					r.ack = time.Now()
					if ka.TTL != int64(r.ttl/time.Second) {
						t.Errorf("%s: keepalive answered TTL %d, want %v", r.key, ka.TTL, r.ttl)
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		waitFor(t, 10*time.Second, "every leased key to be deleted", func() bool {
			for _, r := range results {
				if _, ok := dw.when(r.key); !ok {
					return false
				}
			}
			return true
		})
		if err := dw.failed(); err != nil {
			t.Fatalf("watch: %v", err)
		}
		for _, r := range results {
			at, _ := dw.when(r.key)
			r.delay = at.Sub(r.ack)
			t.Logf("%s (TTL %v, keepalives via n%d, leader n%d): deleted %v after the last keepalive ack (%v past the TTL)",
				r.key, r.ttl, r.via, l, r.delay.Round(time.Millisecond), (r.delay - r.ttl).Round(time.Millisecond))
			if r.delay < r.ttl {
				t.Errorf("%s expired %v after the last keepalive ack, before its TTL %v", r.key, r.delay, r.ttl)
			}
			if r.delay > r.ttl+testElection {
				t.Errorf("%s expired %v after the last keepalive ack, later than TTL %v + one election timeout %v", r.key, r.delay, r.ttl, testElection)
			}
		}
		// The expired leases are gone on every member.
		for i, nd := range tc.nodes {
			for _, id := range leases {
				ttl, err := nd.Client().TimeToLive(ctxTimeout(t, 5*time.Second), id)
				if err != nil || ttl.TTL != -1 {
					t.Errorf("n%d: lease %x after expiry: TTL %v, %v; want -1", i, id, ttl, err)
				}
			}
		}
		checkHashKV(t, tc)
	})

	t.Run("ExpiryUnderLeaderChurn", func(t *testing.T) {
		ttls := []int64{3, 4}
		type lease struct {
			key     string
			ttl     time.Duration
			granted time.Time
		}
		var leases []lease
		var fromRev int64
		for i, ttl := range ttls {
			key := fmt.Sprintf("churn/%d", i)
			_, rev, granted := grantWithKey(t, tc.nodes[i%3].Client(), key, ttl)
			leases = append(leases, lease{key: key, ttl: time.Duration(ttl) * time.Second, granted: granted})
			if fromRev == 0 {
				fromRev = rev
			}
			// Grants half a second apart put their deadlines at
			// different points of the churn.
			time.Sleep(500 * time.Millisecond)
		}
		// The watcher's stream survives the transfers, which keep every
		// member up.
		dw := watchDeletes(t, tc.nodes[0].Client(), "churn/", fromRev)

		// Move leadership round robin every second; no keepalives.
		stop := make(chan struct{})
		var moves atomic.Int64
		var churn sync.WaitGroup
		churn.Go(func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				l := tc.leaderNow()
				if l < 0 {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				if _, err := tc.nodes[l].Client().MoveLeader(ctx, tc.nodes[(l+1)%3].ID()); err == nil {
					moves.Add(1)
				}
				cancel()
			}
		})
		var stopOnce sync.Once
		stopChurn := func() { stopOnce.Do(func() { close(stop); churn.Wait() }) }
		defer stopChurn()

		bound := func(ttl time.Duration) time.Duration {
			return ttl + kvapi.DefaultLeaseCheckpointInterval + testElection
		}
		waitFor(t, bound(4*time.Second)+5*time.Second, "the leased keys to expire under churn", func() bool {
			for _, ls := range leases {
				if _, ok := dw.when(ls.key); !ok {
					return false
				}
			}
			return true
		})
		stopChurn()
		for _, ls := range leases {
			at, _ := dw.when(ls.key)
			d := at.Sub(ls.granted)
			t.Logf("%s (TTL %v) deleted %v after its grant; leadership moved %d times in all", ls.key, ls.ttl, d.Round(time.Millisecond), moves.Load())
			if d < ls.ttl {
				t.Errorf("%s expired %v after its grant, before its TTL %v", ls.key, d, ls.ttl)
			}
			if d > bound(ls.ttl) {
				t.Errorf("%s expired %v after its grant, later than TTL + checkpoint interval + election = %v", ls.key, d, bound(ls.ttl))
			}
		}
		if moves.Load() < 2 {
			t.Errorf("leadership moved only %d times: the churn did not happen", moves.Load())
		}
		checkHashKV(t, tc)
	})

	t.Run("KeepaliveViaFollowerAcrossLeaderChange", func(t *testing.T) {
		const ttl = 3 * time.Second
		l := tc.liveLeader()
		f := (l + 1) % 3 // keepalives go through this follower, which is never killed
		cli := tc.nodes[f].Client()
		id, rev, _ := grantWithKey(t, cli, "follower-kept", int64(ttl/time.Second))
		dw := watchDeletes(t, cli, "follower-kept", rev)
		kactx, stopKeepalive := context.WithCancel(context.Background())
		defer stopKeepalive()
		kach, err := cli.KeepAlive(kactx, id)
		if err != nil {
			t.Fatal(err)
		}
		var (
			kaMu   sync.Mutex
			lastKA time.Time
			kas    int
		)
		kaDone := make(chan struct{})
		go func() {
			defer close(kaDone)
			for range kach {
				kaMu.Lock()
				lastKA, kas = time.Now(), kas+1
				kaMu.Unlock()
			}
		}()
		alive := func(what string) {
			t.Helper()
			if at, ok := dw.when("follower-kept"); ok {
				t.Fatalf("%s: the lease kept alive through follower n%d expired at %v", what, f, at.Format(time.StampMilli))
			}
			select {
			case <-kaDone:
				t.Fatalf("%s: the keepalive channel closed: the lease is gone", what)
			default:
			}
		}
		// hold keeps the lease alive for d while checking it stays.
		hold := func(what string, d time.Duration) {
			t.Helper()
			end := time.Now().Add(d)
			for time.Now().Before(end) {
				alive(what)
				time.Sleep(100 * time.Millisecond) // sampling over a fixed span
			}
			alive(what)
		}
		hold("before any change", time.Second)

		// A transfer to the node that is neither the leader nor f.
		other := 3 - l - f
		tc.moveLeader(other)
		hold("after move-leader", ttl+time.Second)

		// A crash of the leader. If f ends up leading, leadership moves to
		// the survivor, so that keepalives still go through a follower.
		crashed := other
		tc.kill(crashed)
		killedAt := time.Now()
		nl := tc.liveLeader()
		t.Logf("leader n%d killed; n%d leads after %v", crashed, nl, time.Since(killedAt).Round(time.Millisecond))
		if nl == f {
			tc.moveLeader(3 - crashed - f)
		}
		hold("after the leader crash", ttl+time.Second)
		kaMu.Lock()
		t.Logf("%d keepalive responses through follower n%d; the lease survived a transfer and a crash", kas, f)
		kaMu.Unlock()

		// And it does expire once the keepalives stop.
		stopKeepalive()
		<-kaDone
		kaMu.Lock()
		last := lastKA
		kaMu.Unlock()
		waitFor(t, ttl+5*time.Second, "the lease to expire after keepalives stopped", func() bool {
			_, ok := dw.when("follower-kept")
			return ok
		})
		at, _ := dw.when("follower-kept")
		t.Logf("after the keepalives stopped the key was deleted %v after the last ack", at.Sub(last).Round(time.Millisecond))
		if d := at.Sub(last); d < ttl || d > ttl+testElection {
			t.Errorf("expired %v after the last keepalive ack; want between TTL %v and TTL + election %v", d, ttl, ttl+testElection)
		}
		checkHashKV(t, tc)
	})
}

// exclusion detects two holders inside one critical section at once.
type exclusion struct {
	inside  atomic.Int32
	overlap atomic.Int32
}

func (e *exclusion) enter() {
	if e.inside.Add(1) != 1 {
		e.overlap.Add(1)
	}
}

func (e *exclusion) leave() { e.inside.Add(-1) }

// tokenLog records the fencing tokens of successive holders, in the order
// they held the lock (appended inside the critical section).
type tokenLog struct {
	mu     sync.Mutex
	tokens []int64
	who    []string
}

func (l *tokenLog) add(token int64, who string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tokens = append(l.tokens, token)
	l.who = append(l.who, who)
}

// check fails unless the tokens strictly increase.
func (l *tokenLog) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := 1; i < len(l.tokens); i++ {
		if l.tokens[i] <= l.tokens[i-1] {
			t.Errorf("fencing token of holder %d (%s) is %d, not above %d of holder %d (%s)",
				i, l.who[i], l.tokens[i], l.tokens[i-1], i-1, l.who[i-1])
		}
	}
}

// incrCounter reads the counter and writes it back plus one, through cli, without
// any atomicity of its own: only the lock makes it correct.
func incrCounter(ctx context.Context, cli *clientv3.Client, key string) error {
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return err
	}
	n := 0
	if len(resp.Kvs) > 0 {
		if n, err = strconv.Atoi(string(resp.Kvs[0].Value)); err != nil {
			return err
		}
	}
	_, err = cli.Put(ctx, key, strconv.Itoa(n+1))
	return err
}

func counterValue(t *testing.T, cli *clientv3.Client, key string) int {
	t.Helper()
	v, err := getValue(cli, key, 5*time.Second)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s = %q: %v", key, v, err)
	}
	return n
}

// TestClusterLocks: etcd's lock recipe (concurrency.Mutex) and Node.Lock
// across the three members give mutual exclusion and strictly increasing
// fencing tokens, and a holder that dies loses the lock after its TTL.
func TestClusterLocks(t *testing.T) {
	tc := startLockStore(t, 102, false)

	t.Run("MutexCounter16Sessions", func(t *testing.T) {
		const (
			sessions   = 16
			perSession = 20
			lockName   = "locks/counter/"
			counter    = "counter/mutex"
		)
		var (
			ex     exclusion
			tokens tokenLog
			wg     sync.WaitGroup
		)
		ss := make([]*concurrency.Session, sessions)
		for i := range ss {
			s, err := concurrency.NewSession(tc.nodes[i%3].Client(), concurrency.WithTTL(10))
			if err != nil {
				t.Fatalf("session %d: %v", i, err)
			}
			t.Cleanup(func() { _ = s.Close() })
			ss[i] = s
		}
		start := time.Now()
		for i, s := range ss {
			wg.Go(func() {
				cli := s.Client()
				m := concurrency.NewMutex(s, lockName)
				for j := range perSession {
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					err := m.Lock(ctx)
					if err != nil {
						cancel()
						t.Errorf("session %d (n%d) lock %d: %v", i, i%3, j, err)
						return
					}
					ex.enter()
					tok, err := cli.Get(ctx, m.Key(), clientv3.WithSerializable())
					if err == nil && len(tok.Kvs) == 0 {
						err = errors.New("lock key missing while held")
					}
					if err == nil {
						tokens.add(tok.Kvs[0].CreateRevision, fmt.Sprintf("session %d on n%d", i, i%3))
						err = incrCounter(ctx, cli, counter)
					}
					ex.leave()
					if uerr := m.Unlock(ctx); err == nil {
						err = uerr
					}
					cancel()
					if err != nil {
						t.Errorf("session %d (n%d) round %d: %v", i, i%3, j, err)
						return
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		if n := ex.overlap.Load(); n > 0 {
			t.Errorf("mutual exclusion violated %d times", n)
		}
		if got, want := counterValue(t, tc.nodes[0].Client(), counter), sessions*perSession; got != want {
			t.Errorf("counter = %d, want %d: increments were lost", got, want)
		}
		tokens.check(t)
		t.Logf("%d sessions over 3 members, %d lock handovers in %v: %.0f handovers/s",
			sessions, sessions*perSession, elapsed.Round(time.Millisecond), float64(sessions*perSession)/elapsed.Seconds())
		checkHashKV(t, tc)
	})

	t.Run("NodeLockAcrossMembers", func(t *testing.T) {
		const (
			perNode  = 3
			rounds   = 10
			counter  = "counter/native"
			lockName = "native-lock"
		)
		var (
			ex     exclusion
			tokens tokenLog
			wg     sync.WaitGroup
		)
		start := time.Now()
		for i, nd := range tc.nodes {
			for g := range perNode {
				wg.Go(func() {
					for r := range rounds {
						ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
						lk, err := nd.Lock(ctx, lockName, meshkv.WithLockTTL(5*time.Second))
						if err != nil {
							cancel()
							t.Errorf("n%d/%d round %d: lock: %v", i, g, r, err)
							return
						}
						ex.enter()
						if !strings.HasPrefix(lk.Key, lockName+"/") {
							t.Errorf("lock key %q lacks the prefix %q", lk.Key, lockName+"/")
						}
						tokens.add(lk.Token, fmt.Sprintf("n%d/%d", i, g))
						err = incrCounter(ctx, nd.Client(), counter)
						ex.leave()
						if uerr := lk.Unlock(ctx); err == nil {
							err = uerr
						}
						cancel()
						if err != nil {
							t.Errorf("n%d/%d round %d: %v", i, g, r, err)
							return
						}
					}
				})
			}
		}
		wg.Wait()
		n := 3 * perNode * rounds
		if c := ex.overlap.Load(); c > 0 {
			t.Errorf("mutual exclusion violated %d times", c)
		}
		if got := counterValue(t, tc.nodes[1].Client(), counter); got != n {
			t.Errorf("counter = %d, want %d", got, n)
		}
		tokens.check(t)
		t.Logf("Node.Lock: %d acquisitions (each with its own session) over 3 members in %v", n, time.Since(start).Round(time.Millisecond))
		checkHashKV(t, tc)
	})

	t.Run("HolderLeaseExpires", func(t *testing.T) {
		const ttl = 2 * time.Second
		l := tc.liveLeader()
		holderNode, waiterNode := tc.nodes[(l+1)%3], tc.nodes[(l+2)%3]
		s, err := concurrency.NewSession(holderNode.Client(), concurrency.WithTTL(int(ttl/time.Second)))
		if err != nil {
			t.Fatal(err)
		}
		m := concurrency.NewMutex(s, "orphan-lock/")
		if err := m.Lock(ctxTimeout(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
		holderTok, err := holderNode.Client().Get(ctxTimeout(t, 5*time.Second), m.Key())
		if err != nil || len(holderTok.Kvs) != 1 {
			t.Fatalf("holder's key: %v %v", holderTok, err)
		}
		type acquired struct {
			lk  *meshkv.Lock
			at  time.Time
			err error
		}
		got := make(chan acquired, 1)
		go func() {
			lk, err := waiterNode.Lock(ctxTimeout(t, 30*time.Second), "orphan-lock")
			got <- acquired{lk, time.Now(), err}
		}()
		// The holder's process stops refreshing its lease (as if it hung):
		// one last keepalive, acknowledged, starts the final countdown.
		s.Orphan()
		ka, err := holderNode.Client().KeepAliveOnce(ctxTimeout(t, 5*time.Second), s.Lease())
		if err != nil {
			t.Fatal(err)
		}
		lastAck := time.Now()
		if ka.TTL != int64(ttl/time.Second) {
			t.Fatalf("keepalive TTL %d, want %v", ka.TTL, ttl)
		}
		a := <-got
		if a.err != nil {
			t.Fatalf("the waiter never got the lock: %v", a.err)
		}
		defer a.lk.Unlock(ctxTimeout(t, 5*time.Second))
		d := a.at.Sub(lastAck)
		t.Logf("waiter got the lock %v after the holder's last keepalive ack (TTL %v)", d.Round(time.Millisecond), ttl)
		if d < ttl {
			t.Errorf("waiter got the lock %v after the holder's last keepalive ack, before the TTL %v", d, ttl)
		}
		if d > ttl+2*testElection {
			t.Errorf("waiter got the lock %v after the holder's last keepalive ack; want within TTL %v + about an election", d, ttl)
		}
		if a.lk.Token <= holderTok.Kvs[0].CreateRevision {
			t.Errorf("new holder's token %d not above the dead holder's %d", a.lk.Token, holderTok.Kvs[0].CreateRevision)
		}
	})

	t.Run("HolderNodeKilled", func(t *testing.T) {
		const ttl = 3 * time.Second
		// The holder sits on the leader: its death also moves leadership,
		// and the new leader must continue the lease's countdown.
		l := tc.liveLeader()
		waiter := (l + 1) % 3
		holder, err := tc.nodes[l].Lock(ctxTimeout(t, 5*time.Second), "killed-lock", meshkv.WithLockTTL(ttl))
		if err != nil {
			t.Fatal(err)
		}
		type acquired struct {
			lk  *meshkv.Lock
			at  time.Time
			err error
		}
		got := make(chan acquired, 1)
		go func() {
			lk, err := tc.nodes[waiter].Lock(ctxTimeout(t, 30*time.Second), "killed-lock")
			got <- acquired{lk, time.Now(), err}
		}()
		// Let the waiter queue up and the holder refresh at least once.
		waitFor(t, 5*time.Second, "the waiter to queue", func() bool {
			resp, err := tc.nodes[waiter].Client().Get(ctxTimeout(t, time.Second), "killed-lock/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			return err == nil && resp.Count == 2
		})
		// Let the holder's session refresh its lease a few times, so that
		// the kill falls somewhere in a keepalive interval.
		time.Sleep(ttl / 2)
		select {
		case a := <-got:
			t.Fatalf("the waiter got the lock while the holder lives: %+v", a)
		default:
		}
		tc.kill(l)
		killedAt := time.Now()
		a := <-got
		if a.err != nil {
			t.Fatalf("the waiter never got the lock: %v", a.err)
		}
		defer a.lk.Unlock(ctxTimeout(t, 5*time.Second))
		d := a.at.Sub(killedAt)
		t.Logf("holder on leader n%d killed; waiter on n%d got the lock %v later (TTL %v, keepalive every %v to %v)", l, waiter, d.Round(time.Millisecond), ttl, ttl/3, ttl/3+500*time.Millisecond)
		// The holder's last renewal was at most one keepalive interval
		// before the kill: clientv3 renews TTL/3 after the last answer, on
		// a loop that looks every 500 ms.
		if d < ttl-ttl/3-500*time.Millisecond-testTick {
			t.Errorf("waiter got the lock %v after the holder died, before the holder's lease could have run out", d)
		}
		if d > ttl+4*testElection {
			t.Errorf("waiter got the lock %v after the holder died; want within TTL %v + a failover", d, ttl)
		}
		if a.lk.Token <= holder.Token {
			t.Errorf("new holder's token %d not above the dead holder's %d", a.lk.Token, holder.Token)
		}
		checkHashKV(t, tc)
	})
}

// TestLockStoreWatch: a watcher from revision 1 sees every committed event
// exactly once and in order while the leader crashes and its client fails
// over, and a watcher that stops reading does not hold up writes.
func TestClusterWatch(t *testing.T) {
	tc := startLockStore(t, 103, true)

	t.Run("StalledWatcherDoesNotBlockWrites", func(t *testing.T) {
		// More event bytes (20 MiB) than gRPC's largest flow-control
		// window (16 MiB): the server cannot push them all into the
		// stalled stream's buffers.
		const (
			writes    = 5000
			writers   = 8
			valueSize = 4 << 10
		)
		l := tc.liveLeader()
		nd := tc.nodes[l] // watchers and writes on the same member: its apply path feeds both
		cli := nd.Client()
		cur, err := cli.Get(ctxTimeout(t, 5*time.Second), "stall/")
		if err != nil {
			t.Fatal(err)
		}
		from := cur.Header.Revision + 1
		// A raw stream whose client stops reading after the created answer.
		sctx, cancelStall := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancelStall()
		stream, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
			Key: []byte("stall/"), RangeEnd: []byte("stall0"), StartRevision: from,
		}}}); err != nil {
			t.Fatal(err)
		}
		if r, err := stream.Recv(); err != nil || !r.Created {
			t.Fatalf("watch create: %v %v", r, err)
		}
		// A watcher that reads, for comparison.
		var reading atomic.Int64
		rctx, cancelRead := context.WithCancel(context.Background())
		defer cancelRead()
		rch := cli.Watch(rctx, "stall/", clientv3.WithPrefix(), clientv3.WithRev(from))
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			for wr := range rch {
				reading.Add(int64(len(wr.Events)))
			}
		}()

		value := strings.Repeat("v", valueSize)
		var done atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for w := range writers {
			wg.Go(func() {
				for i := w; i < writes; i += writers {
					if err := put(cli, fmt.Sprintf("stall/%04d", i), value, 10*time.Second); err != nil {
						t.Errorf("write %d with a stalled watcher: %v", i, err)
						return
					}
					done.Add(1)
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		if n := done.Load(); n != writes {
			t.Fatalf("%d of %d writes completed with a stalled watcher", n, writes)
		}
		t.Logf("%d writes of %d KiB (%d MiB of events for the stalled watcher) completed in %v", writes, valueSize>>10, writes*valueSize>>20, elapsed.Round(time.Millisecond))
		waitFor(t, 20*time.Second, "the reading watcher to see every write", func() bool { return reading.Load() == writes })
		// Once it reads again, the stalled watcher gets every event, in order.
		next := from
		waitFor(t, 30*time.Second, "the stalled watcher to catch up", func() bool {
			r, err := stream.Recv()
			if err != nil {
				t.Fatalf("stalled watcher: %v", err)
			}
			for _, ev := range r.Events {
				if ev.Kv.ModRevision != next {
					t.Fatalf("stalled watcher: event at revision %d, want %d", ev.Kv.ModRevision, next)
				}
				next++
			}
			return next == from+writes
		})
		cancelStall()
		cancelRead()
		<-readDone
		checkHashKV(t, tc)
	})

	t.Run("EveryEventOnceAcrossLeaderCrash", func(t *testing.T) {
		l := tc.liveLeader()
		survivors := tc.others(l)
		writer := tc.nodes[survivors[0]].Client()
		var endpoints []string
		for _, nd := range tc.nodes {
			endpoints = append(endpoints, nd.ClientAddrs()[0])
		}
		// The watcher's client dials the leader alone, so its stream runs
		// there; then it learns every endpoint to fail over to.
		wcli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{tc.nodes[l].ClientAddrs()[0]},
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { wcli.Close() })

		var (
			mu         sync.Mutex
			events     []string // "rev key type"
			streams    = 0
			closedErrs []string
			lastRev    int64
			members    = map[uint64]bool{}
		)
		wctx, stopWatch := context.WithCancel(context.Background())
		defer stopWatch()
		watchDone := make(chan struct{})
		go func() {
			defer close(watchDone)
			next := int64(1)
			for wctx.Err() == nil {
				mu.Lock()
				streams++
				mu.Unlock()
				wch := wcli.Watch(clientv3.WithRequireLeader(wctx), "", clientv3.WithFromKey(), clientv3.WithRev(next))
				for wr := range wch {
					mu.Lock()
					if err := wr.Err(); err != nil {
						closedErrs = append(closedErrs, err.Error())
					}
					members[wr.Header.MemberId] = true
					for _, ev := range wr.Events {
						events = append(events, fmt.Sprintf("%d %s %s", ev.Kv.ModRevision, ev.Kv.Key, ev.Type))
						next = ev.Kv.ModRevision + 1
						lastRev = ev.Kv.ModRevision
					}
					mu.Unlock()
				}
				// The channel closed: resume from the last revision + 1.
				if wctx.Err() == nil {
					time.Sleep(50 * time.Millisecond) // back off before the next stream
				}
			}
		}()

		// Writes run throughout, through a member that survives.
		var (
			acked   []int64
			failed  int
			stopW   = make(chan struct{})
			writesW sync.WaitGroup
		)
		writesW.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopW:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				resp, err := writer.Put(ctx, fmt.Sprintf("wf/%d", i%50), strconv.Itoa(i))
				cancel()
				if err != nil {
					failed++
					continue
				}
				acked = append(acked, resp.Header.Revision)
				time.Sleep(5 * time.Millisecond) // pace: a few hundred writes a second
			}
		})
		waitFor(t, 10*time.Second, "the watcher to receive events from the leader", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return lastRev > 0 && members[tc.nodes[l].ID()]
		})
		wcli.SetEndpoints(endpoints...)
		time.Sleep(500 * time.Millisecond) // writes flowing before the crash

		// The leader crashes: its mesh links go silent and its process
		// (here: its gRPC server) goes away.
		mu.Lock()
		revAtCrash := lastRev
		mu.Unlock()
		tc.kill(l)
		crashedAt := time.Now()
		closed := make(chan error, 1)
		go func() { closed <- tc.nodes[l].Close() }()
		nl := tc.liveLeader()
		failover := time.Since(crashedAt)
		waitFor(t, 20*time.Second, "the watcher to receive events from a surviving member", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return lastRev > revAtCrash+20
		})
		resumedAfter := time.Since(crashedAt)
		time.Sleep(500 * time.Millisecond) // writes flowing after the failover
		close(stopW)
		writesW.Wait()
		<-closed

		final, err := writer.Get(ctxTimeout(t, 5*time.Second), "wf/0")
		if err != nil {
			t.Fatal(err)
		}
		finalRev := final.Header.Revision
		waitFor(t, 10*time.Second, "the watcher to reach the final revision", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return lastRev >= finalRev
		})
		stopWatch()
		<-watchDone

		// The truth: the history, replayed by a fresh watcher on a survivor.
		var truth []string
		hctx, hcancel := context.WithTimeout(context.Background(), 20*time.Second)
		for wr := range writer.Watch(hctx, "", clientv3.WithFromKey(), clientv3.WithRev(1)) {
			for _, ev := range wr.Events {
				truth = append(truth, fmt.Sprintf("%d %s %s", ev.Kv.ModRevision, ev.Kv.Key, ev.Type))
			}
			if len(truth) > 0 && eventRev(truth[len(truth)-1]) >= finalRev {
				break
			}
		}
		hcancel()
		if len(truth) == 0 || eventRev(truth[len(truth)-1]) < finalRev {
			t.Fatalf("replaying the history up to revision %d on a survivor got only %d events", finalRev, len(truth))
		}
		mu.Lock()
		got := slices.Clone(events)
		nstreams, errs, servedBy := streams, slices.Clone(closedErrs), len(members)
		mu.Unlock()
		// Events past finalRev (none expected: the writer stopped) are
		// ignored on both sides.
		got = slices.DeleteFunc(got, func(e string) bool { return eventRev(e) > finalRev })
		if i := eventsFirstDiff(got, truth); i >= 0 {
			t.Fatalf("watcher saw %d events, history has %d; first difference at %d: got %v, want %v",
				len(got), len(truth), i, eventsAround(got, i), eventsAround(truth, i))
		}
		for _, r := range acked {
			if _, ok := slices.BinarySearchFunc(got, r, func(e string, r int64) int { return int(eventRev(e) - r) }); !ok {
				t.Fatalf("acknowledged write at revision %d missing from the watch", r)
			}
		}
		t.Logf("leader n%d crashed at revision %d; n%d led after %v; the watcher resumed %v after the crash; %d events from revision 1 to %d, each once and in order; %d acknowledged writes, %d failed during the failover; served by %d members over %d watch streams (channel closes with: %v)",
			l, revAtCrash, nl, failover.Round(time.Millisecond), resumedAfter.Round(time.Millisecond), len(got), finalRev, len(acked), failed, servedBy, nstreams, errs)
		if servedBy < 2 {
			t.Errorf("the watch was served by %d member(s): it never failed over", servedBy)
		}
		checkHashKV(t, tc)
	})
}

// TestClusterWatchRequireLeader: a watch opened with WithRequireLeader on a
// member that loses contact with the rest of the cluster ends with etcd's
// "no leader" error (etcd cancels such streams after about three election
// timeouts without a leader), so the client resumes from its last revision
// + 1 on another member and sees every event once.
func TestClusterWatchRequireLeader(t *testing.T) {
	tc := startLockStore(t, 104, true)
	l := tc.liveLeader()
	wcli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{tc.nodes[l].ClientAddrs()[0]},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wcli.Close() })
	for i := range 10 {
		if err := put(tc.nodes[l].Client(), fmt.Sprintf("rl/%d", i), "before", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	defer cancel()
	wch := wcli.Watch(wctx, "rl/", clientv3.WithPrefix(), clientv3.WithRev(1))
	var seen []int64
	for len(seen) < 10 {
		wr, ok := <-wch
		if !ok || wr.Err() != nil {
			t.Fatalf("watch ended early: %v", wr.Err())
		}
		for _, ev := range wr.Events {
			seen = append(seen, ev.Kv.ModRevision)
		}
	}
	// The member is cut off; the others go on writing.
	tc.kill(l)
	killedAt := time.Now()
	survivor := tc.nodes[tc.others(l)[0]]
	// Writes during the failover may fail (and may still have happened:
	// the check below counts revisions, not keys).
	for i := 10; i < 20; i++ {
		waitFor(t, 10*time.Second, fmt.Sprintf("write %d after the cut", i), func() bool {
			return put(survivor.Client(), fmt.Sprintf("rl/%d", i), "after", time.Second) == nil
		})
	}
	// etcd: canceled once the member has had no leader for 3 election
	// timeouts; CheckQuorum makes it lose its leader within one more.
	limit := 5*testElection + 2*time.Second
	var endErr error
	timeout := time.After(limit)
wait:
	for {
		select {
		case wr, ok := <-wch:
			if !ok {
				break wait
			}
			if err := wr.Err(); err != nil {
				endErr = err
			}
			if len(wr.Events) > 0 {
				t.Fatalf("the cut-off member delivered events after the cut: %v", wr.Events)
			}
		case <-timeout:
			st, err := tc.nodes[l].Client().Status(ctxTimeout(t, time.Second), "x")
			if err != nil || st.Leader != 0 {
				t.Fatalf("the cut-off member still reports leader %x (%v) %v after the cut", st.Leader, err, limit)
			}
			t.Fatalf("a require-leader watch on a member cut off from the cluster was still open %v after the cut, although the member reports no leader: the watch never ends, so the client never fails over and silently misses every later event (etcd ends it with %q)", limit, rpctypes.ErrNoLeader)
		}
	}
	t.Logf("require-leader watch ended %v after the cut with %v", time.Since(killedAt).Round(time.Millisecond), endErr)
	if !errors.Is(endErr, rpctypes.ErrNoLeader) {
		t.Errorf("the watch ended with %v, want %v", endErr, rpctypes.ErrNoLeader)
	}
	// Resume elsewhere from the last revision + 1.
	rcli := survivor.Client()
	rch := rcli.Watch(context.Background(), "rl/", clientv3.WithPrefix(), clientv3.WithRev(seen[len(seen)-1]+1))
	for len(seen) < 20 {
		wr := <-rch
		for _, ev := range wr.Events {
			seen = append(seen, ev.Kv.ModRevision)
		}
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] != seen[i-1]+1 {
			t.Fatalf("revisions seen %v: not each once in order", seen)
		}
	}
}

func eventRev(e string) int64 {
	r, _ := strconv.ParseInt(e[:strings.IndexByte(e, ' ')], 10, 64)
	return r
}

func eventsFirstDiff(a, b []string) int {
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return -1
}

func eventsAround(s []string, i int) []string { return s[min(i, len(s)):min(i+3, len(s))] }
