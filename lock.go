package meshkv

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// DefaultLockTTL is the lease TTL of a lock taken with Node.Lock: if the
// holder's process dies, the lock is released this long after its last
// keepalive.
const DefaultLockTTL = 10 * time.Second

// ErrLockLost is returned by Lock.Unlock when the lock's lease expired before
// the unlock (another holder may have taken it since).
var ErrLockLost = errors.New("meshkv: lock lost: its lease expired")

// Lock is a held lock. It is etcd's lock recipe (clientv3/concurrency.Mutex)
// on its own session, so it interoperates with etcd clients and `etcdctl
// lock` using the same name.
type Lock struct {
	// Key is the lock's key in the store: name/<lease id in hex>.
	Key string
	// Token is a fencing token: the create revision of Key. Successive holders
	// of one lock name get strictly increasing tokens, so a resource guarded
	// by the lock can reject writes carrying an older token.
	Token int64

	session *concurrency.Session
	mutex   *concurrency.Mutex
}

// LockOption adjusts a Lock call.
type LockOption func(*lockOptions)

type lockOptions struct{ ttl time.Duration }

// WithLockTTL sets the TTL of the lock's lease (default DefaultLockTTL; at
// least 2 s, etcd's minimum lease TTL).
func WithLockTTL(d time.Duration) LockOption { return func(o *lockOptions) { o.ttl = d } }

// Lock acquires the lock called name, waiting until it is free or ctx ends.
// The lock is held until Unlock, or until its lease expires because this
// process stopped keeping it alive (see Done).
func (n *Node) Lock(ctx context.Context, name string, opts ...LockOption) (*Lock, error) {
	if name == "" {
		return nil, errors.New("meshkv: lock name is empty")
	}
	o := lockOptions{ttl: DefaultLockTTL}
	for _, f := range opts {
		f(&o)
	}
	ttl := int((o.ttl + time.Second - 1) / time.Second)
	s, err := concurrency.NewSession(n.client, concurrency.WithTTL(ttl), concurrency.WithContext(n.ctx))
	if err != nil {
		return nil, fmt.Errorf("meshkv: lock %q: session: %w", name, err)
	}
	m := concurrency.NewMutex(s, name)
	if err := m.Lock(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("meshkv: lock %q: %w", name, err)
	}
	resp, err := n.client.Get(ctx, m.Key(), clientv3.WithSerializable())
	if err == nil && len(resp.Kvs) == 0 {
		err = ErrLockLost
	}
	if err != nil {
		_ = m.Unlock(context.WithoutCancel(ctx))
		_ = s.Close()
		return nil, fmt.Errorf("meshkv: lock %q: read token: %w", name, err)
	}
	return &Lock{Key: m.Key(), Token: resp.Kvs[0].CreateRevision, session: s, mutex: m}, nil
}

// Done is closed when the lock's session ends: after Unlock, or when its
// lease could not be kept alive (the lock may then be held by someone else).
func (l *Lock) Done() <-chan struct{} { return l.session.Done() }

// Unlock releases the lock and ends its session.
func (l *Lock) Unlock(ctx context.Context) error {
	select {
	case <-l.session.Done():
		return ErrLockLost
	default:
	}
	err := l.mutex.Unlock(ctx)
	if cerr := l.session.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("meshkv: unlock %s: %w", l.Key, err)
	}
	return nil
}
