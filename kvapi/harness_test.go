package kvapi

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// localReplicator applies proposals at once, in call order: a one-member log
// without raft, for testing the services alone.
type localReplicator struct {
	mu    sync.Mutex
	sm    *StateMachine
	index uint64
}

func (r *localReplicator) Propose(ctx context.Context, data []byte) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index++
	return r.sm.Apply(r.index, data), nil
}

func (r *localReplicator) ReadIndex(ctx context.Context) error { return ctx.Err() }

// fixedCluster is a one-member cluster that always leads.
type fixedCluster struct{}

func (fixedCluster) ClusterID() uint64 { return 0xc1 }
func (fixedCluster) MemberID() uint64  { return 0x31 }
func (fixedCluster) RaftStatus() RaftStatus {
	return RaftStatus{Leader: 0x31, Term: 2, CommitIndex: 1, AppliedIndex: 1}
}
func (fixedCluster) LeaderTerm() (uint64, uint64) { return 0x31, 2 }
func (fixedCluster) Members() []*pb.Member        { return []*pb.Member{{ID: 0x31, Name: "test"}} }
func (fixedCluster) Errors() []string             { return nil }

// testServer is the services over a local replicator, reachable by gRPC in
// memory.
type testServer struct {
	store *mvcc.Store
	sm    *StateMachine
	srv   *Server
	conn  *grpc.ClientConn
	cli   *clientv3.Client
}

func newTestServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	return newTestServerWith(t, cfg, fixedCluster{})
}

// newTestServerWith is newTestServer with a Cluster of the test's choosing.
func newTestServerWith(t *testing.T, cfg Config, cluster Cluster) *testServer {
	t.Helper()
	store := mvcc.New()
	rep := &localReplicator{sm: NewStateMachine(store)}
	srv, err := NewServer(cfg, store, rep, cluster)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(srv.ServerOptions()...)
	srv.Register(g)
	lis := bufconn.Listen(1 << 20)
	go g.Serve(lis)
	dial := func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }
	conn, err := grpc.NewClient("passthrough:///kvapi-test", grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"kvapi-test:0"},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cli.Close()
		conn.Close()
		g.Stop()
	})
	return &testServer{store: store, sm: rep.sm, srv: srv, conn: conn, cli: cli}
}
