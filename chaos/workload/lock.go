package workload

import (
	"context"
	"fmt"
	"time"

	"github.com/meshkv/meshkv/chaos/check"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// encodeCounter is the value a holder writes into the lock-protected counter.
func encodeCounter(holder string, token, counter int64) string {
	return fmt.Sprintf("holder=%s token=%d counter=%d", holder, token, counter)
}

// decodeCounter parses encodeCounter's format.
func decodeCounter(v string) (holder string, token, counter int64, err error) {
	if _, err := fmt.Sscanf(v, "holder=%s token=%d counter=%d", &holder, &token, &counter); err != nil {
		return "", 0, 0, fmt.Errorf("workload: counter value %q: %w", v, err)
	}
	return holder, token, counter, nil
}

// tokenOf extracts the fencing token (the lock key's create revision) from a
// held mutex.
func tokenOf(m *concurrency.Mutex) int64 {
	owner := m.IsOwner()
	if t, ok := owner.GetCompare().GetTargetUnion().(*pb.Compare_CreateRevision); ok {
		return t.CreateRevision
	}
	return 0
}

// lockWorker repeatedly takes the lock, increments the counter twice under
// it with fenced writes, and releases it. Any error ends the session (a new
// one, with a new lease and lock key, is made for the next round), so a write
// left in flight by an old tenure can only ever be fenced by its own token.
func (w *Workload) lockWorker(ctx context.Context, idx int, cli *clientv3.Client) {
	var sess *concurrency.Session
	defer func() {
		if sess != nil {
			w.closeSession(sess)
		}
	}()
	for ctx.Err() == nil {
		if sess == nil {
			s, err := w.newSession(ctx, cli)
			if err != nil {
				if isUnimplemented(err) {
					w.mu.Lock()
					w.lockNote = "lease service not available: " + err.Error()
					w.mu.Unlock()
					return
				}
				if !sleep(ctx, 200*time.Millisecond) {
					return
				}
				continue
			}
			sess = s
			w.mu.Lock()
			w.lockStats.Sessions++
			w.mu.Unlock()
		}
		holder := fmt.Sprintf("L%d/%x", idx, int64(sess.Lease()))
		if !w.tenure(ctx, cli, sess, holder) {
			w.closeSession(sess)
			sess = nil
			if !sleep(ctx, 100*time.Millisecond) {
				return
			}
			continue
		}
		if !sleep(ctx, w.cfg.Pause) {
			return
		}
	}
}

// newSession grants a lease (bounded by the op timeout) and keeps it alive
// until ctx ends or the session is closed.
func (w *Workload) newSession(ctx context.Context, cli *clientv3.Client) (*concurrency.Session, error) {
	gctx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
	lease, err := cli.Grant(gctx, int64(w.cfg.SessionTTL))
	cancel()
	if err != nil {
		return nil, err
	}
	return concurrency.NewSession(cli, concurrency.WithLease(lease.ID), concurrency.WithTTL(w.cfg.SessionTTL), concurrency.WithContext(ctx))
}

// closeSession revokes the session's lease; if that fails the lease expires
// by its TTL.
// It runs after the worker's context may have ended (at Stop), so it uses
// its own bounded context.
func (w *Workload) closeSession(s *concurrency.Session) {
	s.Orphan()
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
	defer cancel()
	_, _ = s.Client().Revoke(ctx, s.Lease())
}

// tenure takes the lock once and writes under it. It reports whether the
// session can be used again (false after any error).
func (w *Workload) tenure(ctx context.Context, cli *clientv3.Client, sess *concurrency.Session, holder string) bool {
	m := concurrency.NewMutex(sess, DefaultLockPrefix)
	w.mu.Lock()
	w.lockStats.Attempts++
	w.mu.Unlock()
	call := w.Now()
	lctx, cancel := context.WithTimeout(ctx, 3*w.cfg.OpTimeout)
	err := m.Lock(lctx)
	cancel()
	if err != nil {
		w.mu.Lock()
		w.lockStats.Failed++
		if isUnimplemented(err) && w.lockNote == "" {
			w.lockNote = "lock needs the watch service, not available: " + err.Error()
		}
		w.mu.Unlock()
		return false
	}
	token := tokenOf(m)
	w.mu.Lock()
	w.lockStats.Acquired++
	w.acqs = append(w.acqs, check.Acquisition{Holder: holder, Token: token, Call: call, Return: w.Now()})
	w.mu.Unlock()

	for range 2 {
		gctx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
		resp, err := cli.Get(gctx, DefaultLockCounterKey)
		cancel()
		if err != nil {
			return false
		}
		var n int64
		if len(resp.Kvs) > 0 {
			if _, _, n, err = decodeCounter(string(resp.Kvs[0].Value)); err != nil {
				w.log.Error("lock counter unreadable", "err", err)
				return false
			}
		}
		val := encodeCounter(holder, token, n+1)
		tctx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
		tresp, err := cli.Txn(tctx).If(m.IsOwner()).Then(clientv3.OpPut(DefaultLockCounterKey, val)).Commit()
		cancel()
		if err != nil {
			w.mu.Lock()
			w.lockStats.Uncertain++
			w.mu.Unlock()
			return false
		}
		if !tresp.Succeeded {
			return false // the lock was lost (session expired): fenced off
		}
		w.mu.Lock()
		w.guarded = append(w.guarded, check.GuardedWrite{Holder: holder, Token: token, Counter: n + 1, Rev: tresp.Header.Revision})
		w.mu.Unlock()
	}
	uctx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
	err = m.Unlock(uctx)
	cancel()
	return err == nil
}
