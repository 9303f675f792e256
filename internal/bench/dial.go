package bench

import (
	"context"
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

// Dial opens conns etcd clients (each its own gRPC connection, balancing
// over all endpoints) for Run. The clients live until CloseAll, or until ctx
// ends.
func Dial(ctx context.Context, endpoints []string, conns int) ([]*clientv3.Client, error) {
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
