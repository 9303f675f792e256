package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// dialTimeout bounds the connection of each client in Dial.
const dialTimeout = 5 * time.Second

// ErrNoEndpoints is returned by Dial without endpoints.
var ErrNoEndpoints = errors.New("bench: no endpoints")

// ClientOptions are the transport security and credentials of the clients
// DialWith opens. The zero value is plaintext without a user.
type ClientOptions struct {
	// TLS secures the connections (nil: plaintext, unless an endpoint is
	// https:// or unixs://, which then uses the system's roots).
	TLS *tls.Config
	// Username and Password authenticate each client (etcd's auth); empty
	// Username: none.
	Username string
	Password string
}

// Dial opens conns plaintext etcd clients without a user; see DialWith.
func Dial(ctx context.Context, endpoints []string, conns int) ([]*clientv3.Client, error) {
	return DialWith(ctx, endpoints, conns, ClientOptions{})
}

// DialWith opens conns etcd clients (each its own gRPC connection, balancing
// over all endpoints) for Run. The clients live until CloseAll, or until ctx
// ends.
func DialWith(ctx context.Context, endpoints []string, conns int, opts ClientOptions) ([]*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, ErrNoEndpoints
	}
	if conns < 1 {
		return nil, fmt.Errorf("%w: %d connections", ErrInvalidConfig, conns)
	}
	clients := make([]*clientv3.Client, 0, conns)
	for range conns {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   endpoints,
			DialTimeout: dialTimeout,
			Context:     ctx,
			Logger:      zap.NewNop(),
			TLS:         opts.TLS,
			Username:    opts.Username,
			Password:    opts.Password,
		})
		if err != nil {
			CloseAll(clients)
			return nil, fmt.Errorf("bench: connect to %v: %w", endpoints, err)
		}
		clients = append(clients, c)
	}
	return clients, nil
}

// CloseAll closes the clients.
func CloseAll(clients []*clientv3.Client) {
	for _, c := range clients {
		_ = c.Close()
	}
}
