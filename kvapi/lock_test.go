package kvapi

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshkv/meshkv/api/v3lockpb"
)

// lockCounterStep reads the counter through the store, checks that nobody else
// is inside, and writes it back incremented.
func lockCounterStep(ctx context.Context, cli *clientv3.Client, inside *atomic.Int32) error {
	if n := inside.Add(1); n != 1 {
		return fmt.Errorf("%d holders inside the critical section", n)
	}
	defer inside.Add(-1)
	r, err := cli.Get(ctx, "counter")
	if err != nil {
		return err
	}
	n := 0
	if len(r.Kvs) == 1 {
		if n, err = strconv.Atoi(string(r.Kvs[0].Value)); err != nil {
			return err
		}
	}
	_, err = cli.Put(ctx, "counter", strconv.Itoa(n+1))
	return err
}

func lockWantCounter(t *testing.T, ctx context.Context, cli *clientv3.Client, want int) {
	t.Helper()
	r, err := cli.Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != strconv.Itoa(want) {
		t.Fatalf("counter = %v, want %d", r.Kvs, want)
	}
}

const (
	lockTestLockers = 16
	lockTestRounds  = 3
)

func TestLockServiceMutualExclusion(t *testing.T) {
	ts := newLeaseTestServer(t, LeaseConfig{})
	ctx := leaseTestCtx(t)
	lc := v3lockpb.NewLockClient(ts.conn)
	var inside atomic.Int32
	var wg sync.WaitGroup
	errc := make(chan error, lockTestLockers)
	for range lockTestLockers {
		wg.Go(func() {
			g, err := ts.cli.Grant(ctx, 30)
			if err != nil {
				errc <- err
				return
			}
			for range lockTestRounds {
				lr, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("mtx"), Lease: int64(g.ID)})
				if err != nil {
					errc <- err
					return
				}
				if want := fmt.Sprintf("mtx/%x", g.ID); string(lr.Key) != want {
					errc <- fmt.Errorf("lock key %q, want %q", lr.Key, want)
				}
				if err := lockCounterStep(ctx, ts.cli, &inside); err != nil {
					errc <- err
				}
				if _, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: lr.Key}); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	lockWantCounter(t, ctx, ts.cli, lockTestLockers*lockTestRounds)
}

func TestLockConcurrencyMutexMutualExclusion(t *testing.T) {
	ts := newLeaseTestServer(t, LeaseConfig{})
	ctx := leaseTestCtx(t)
	var inside atomic.Int32
	var wg sync.WaitGroup
	errc := make(chan error, lockTestLockers)
	for range lockTestLockers {
		wg.Go(func() {
			sess, err := concurrency.NewSession(ts.cli, concurrency.WithTTL(30))
			if err != nil {
				errc <- err
				return
			}
			defer sess.Close()
			m := concurrency.NewMutex(sess, "cmtx")
			for range lockTestRounds {
				if err := m.Lock(ctx); err != nil {
					errc <- err
					return
				}
				if err := lockCounterStep(ctx, ts.cli, &inside); err != nil {
					errc <- err
				}
				if err := m.Unlock(ctx); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	lockWantCounter(t, ctx, ts.cli, lockTestLockers*lockTestRounds)
}

func TestLockSemantics(t *testing.T) {
	ts := newLeaseTestServer(t, LeaseConfig{})
	ctx := leaseTestCtx(t)
	lc := v3lockpb.NewLockClient(ts.conn)
	g1, err := ts.cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := ts.cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}

	l1, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("name"), Lease: int64(g1.ID)})
	if err != nil {
		t.Fatal(err)
	}
	key1 := fmt.Sprintf("name/%x", g1.ID)
	if string(l1.Key) != key1 || l1.Header == nil || l1.Header.Revision != ts.store.Rev() || l1.Header.MemberId != 0x31 {
		t.Fatalf("lock = key %q header %v, want key %q", l1.Key, l1.Header, key1)
	}
	// Locking again with the same lease returns at once, with the same key.
	again, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("name"), Lease: int64(g1.ID)})
	if err != nil || string(again.Key) != key1 {
		t.Fatalf("relock = %v, %v", again, err)
	}

	// Another lease waits until the holder unlocks.
	key2 := fmt.Sprintf("name/%x", g2.ID)
	type lockResult struct {
		resp *v3lockpb.LockResponse
		err  error
	}
	done := make(chan lockResult, 1)
	go func() {
		r, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("name"), Lease: int64(g2.ID)})
		done <- lockResult{r, err}
	}()
	leaseWaitFor(t, "the second locker's key", func() bool { return leaseKeyExists(t, ts.store, key2) })
	select {
	case r := <-done:
		t.Fatalf("second Lock returned while the first holds the lock: %v, %v", r.resp, r.err)
	default:
	}
	ur, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: l1.Key})
	if err != nil || ur.Header == nil || ur.Header.Revision != ts.store.Rev() {
		t.Fatalf("unlock = %v, %v", ur, err)
	}
	r := <-done
	if r.err != nil || string(r.resp.Key) != key2 {
		t.Fatalf("second Lock = %v, %v", r.resp, r.err)
	}

	// A Lock that gives up removes its waiting key.
	g3, err := ts.cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = lc.Lock(short, &v3lockpb.LockRequest{Name: []byte("name"), Lease: int64(g3.ID)})
	if c := status.Code(err); c != codes.DeadlineExceeded {
		t.Fatalf("Lock past its deadline: %v, want DeadlineExceeded", err)
	}
	leaseWaitFor(t, "the abandoned waiter's key to go", func() bool { return !leaseKeyExists(t, ts.store, fmt.Sprintf("name/%x", g3.ID)) })

	// Revoking the holder's lease releases the lock.
	if _, err := ts.cli.Revoke(ctx, g2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("name"), Lease: int64(g3.ID)}); err != nil {
		t.Fatal(err)
	}
}

func TestLockUnknownLease(t *testing.T) {
	ts := newLeaseTestServer(t, LeaseConfig{})
	ctx := leaseTestCtx(t)
	_, err := v3lockpb.NewLockClient(ts.conn).Lock(ctx, &v3lockpb.LockRequest{Name: []byte("n"), Lease: 0x1234})
	st := status.Convert(err)
	if err == nil || st.Code() != codes.Unknown || st.Message() != "etcdserver: requested lease not found" {
		t.Fatalf("Lock with an unknown lease: %v, want Unknown %q", err, "etcdserver: requested lease not found")
	}
}

func TestLockWithoutClient(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.srv.UseClient(nil)
	_, err := v3lockpb.NewLockClient(ts.conn).Lock(leaseTestCtx(t), &v3lockpb.LockRequest{Name: []byte("n"), Lease: 1})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Lock before UseClient: %v, want Unavailable", err)
	}
}

// leaseWaitFor polls cond until it holds or the test's patience ends.
func leaseWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling the condition
	}
}
