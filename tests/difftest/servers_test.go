package difftest

import (
	"flag"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

var selfCheck = flag.Bool("self", false, "compare etcd with a second etcd instead of meshkv (checks the harness)")

// target is one server under comparison, reached through raw gRPC clients.
type target struct {
	name  string
	kv    pb.KVClient
	lease pb.LeaseClient
	watch pb.WatchClient
}

func newTarget(name string, conn *grpc.ClientConn) *target {
	return &target{
		name:  name,
		kv:    pb.NewKVClient(conn),
		lease: pb.NewLeaseClient(conn),
		watch: pb.NewWatchClient(conn),
	}
}

// startPair starts a fresh reference etcd and a fresh server under test
// (meshkv, or a second etcd with -self). Both are stopped on cleanup.
func startPair(t *testing.T) (ref, sut *target) {
	t.Helper()
	ref = newTarget("etcd", startEtcd(t))
	if *selfCheck {
		return ref, newTarget("etcd2", startEtcd(t))
	}
	return ref, newTarget("meshkv", startMeshkv(t))
}

// startEtcd runs an embedded single-member etcd with default limits and
// timing (so lease TTL minimums match), without fsync, and returns a gRPC
// connection to it.
func startEtcd(t *testing.T, opts ...func(*embed.Config)) *grpc.ClientConn {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "difftest"
	cfg.Dir = t.TempDir()
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	zero := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenPeerUrls = []url.URL{zero}
	cfg.AdvertisePeerUrls = []url.URL{zero}
	cfg.ListenClientUrls = []url.URL{zero}
	cfg.AdvertiseClientUrls = []url.URL{zero}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	for _, o := range opts {
		o(cfg)
	}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcd failed while starting: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready after 30s")
	}
	conn, err := grpc.NewClient(e.Clients[0].Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial etcd: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
