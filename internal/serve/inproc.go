package serve

import (
	"context"
	"net"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"

	"github.com/meshkv/meshkv/kvapi"
)

// InprocClient returns an etcd client that reaches the gRPC server over the
// in-memory listener l. The client's own logs (it logs through zap) are
// discarded: they are noise for an embedded node.
func InprocClient(l *bufconn.Listener) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		// The endpoint is a name only: the dialer below ignores it.
		Endpoints:   []string{"inproc.meshkv.local:0"},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				return l.DialContext(ctx)
			}),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(kvapi.Codec)),
		},
	})
}
