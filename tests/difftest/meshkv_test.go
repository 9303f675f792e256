package difftest

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshkv/meshkv"
)

// startMeshkv starts a single in-memory meshkv node listening on a free
// loopback port and returns a raw gRPC connection to it. It goes through TCP
// with default gRPC options, like the connection to etcd, so that no client
// side limit (clientv3 caps what it sends) hides how the server answers.
func startMeshkv(t *testing.T, opts ...func(*meshkv.Config)) *grpc.ClientConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cfg := meshkv.Config{Name: "difftest", ListenClientURLs: []string{"http://127.0.0.1:0"}}
	for _, o := range opts {
		o(&cfg)
	}
	n, err := meshkv.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start meshkv: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close meshkv: %v", err)
		}
	})
	conn, err := grpc.NewClient(n.ClientAddrs()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial meshkv: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
