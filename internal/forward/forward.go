// Package forward keeps the client connections a member uses to forward
// operator requests (member remove and promote) to the raft leader: one
// etcd client per leader, dialed on first use and reused until the leader
// or its advertised client URLs change, instead of one dial per request.
//
// Clients owns its connections: Close closes them, and a Client call after
// Close fails with ErrClosed. It starts no goroutines of its own (each etcd
// client runs gRPC's, until it is closed).
package forward

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/status"
)

// ErrClosed is returned by Client after Close.
var ErrClosed = errors.New("forward: clients closed")

// dialTimeout bounds the connection attempt of a new client.
const dialTimeout = 5 * time.Second

// Clients holds at most one etcd client per leader. The zero value is ready
// to use; all methods are safe for concurrent use.
type Clients struct {
	mu      sync.Mutex
	closed  bool
	clients map[uint64]entry
}

type entry struct {
	urls []string
	cli  *clientv3.Client
}

// Client returns the client for member id at urls, dialing it if there is
// none yet or its URLs changed. Clients of other members are closed first:
// requests go to the current leader only, so at most one is kept.
func (c *Clients) Client(id uint64, urls []string) (*clientv3.Client, error) {
	if len(urls) == 0 {
		return nil, fmt.Errorf("forward: member %x advertises no client URL", id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if e, ok := c.clients[id]; ok && slices.Equal(e.urls, urls) {
		return e.cli, nil
	}
	c.closeAllLocked()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   slices.Clone(urls),
		DialTimeout: dialTimeout,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("forward: client for member %x: %w", id, err)
	}
	c.clients = map[uint64]entry{id: {urls: slices.Clone(urls), cli: cli}}
	return cli, nil
}

// Close closes every client; later Client calls fail with ErrClosed. It is
// idempotent.
func (c *Clients) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.closeAllLocked()
}

func (c *Clients) closeAllLocked() {
	for id, e := range c.clients {
		_ = e.cli.Close()
		delete(c.clients, id)
	}
}

// StatusError turns an error of a forwarded call back into the gRPC status
// error the leader sent: etcd's client replaces etcd's errors with values of
// its own that carry the code and message but no gRPC status. Other errors
// are returned as they are.
func StatusError(err error) error {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return status.Error(ee.Code(), ee.Error())
	}
	return err
}
