package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"sort"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	etcdelection "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	etcdlock "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"

	"github.com/meshkv/meshkv/api/v3electionpb"
	"github.com/meshkv/meshkv/api/v3lockpb"
)

// TestServiceInfoMatches compares the services as gRPC sees them: service
// names, method names, and which methods stream in which direction.
func TestServiceInfoMatches(t *testing.T) {
	ours := grpc.NewServer()
	v3lockpb.RegisterLockServer(ours, v3lockpb.UnimplementedLockServer{})
	v3electionpb.RegisterElectionServer(ours, v3electionpb.UnimplementedElectionServer{})
	theirs := grpc.NewServer()
	etcdlock.RegisterLockServer(theirs, &etcdlock.UnimplementedLockServer{})
	etcdelection.RegisterElectionServer(theirs, &etcdelection.UnimplementedElectionServer{})

	got, want := describe(ours.GetServiceInfo()), describe(theirs.GetServiceInfo())
	if !reflect.DeepEqual(got, want) {
		t.Errorf("gRPC services differ:\n ours %v\n etcd %v", got, want)
	}
	if len(want) != 7 {
		t.Errorf("etcd's services have %d methods, want 7: %v", len(want), want)
	}
}

// describe flattens service info to sorted "service/method client=.. server=.." lines.
func describe(info map[string]grpc.ServiceInfo) []string {
	var out []string
	for svc, si := range info {
		for _, m := range si.Methods {
			out = append(out, fmt.Sprintf("/%s/%s clientStream=%v serverStream=%v", svc, m.Name, m.IsClientStream, m.IsServerStream))
		}
	}
	sort.Strings(out)
	return out
}

// serve runs a gRPC server on an in-memory listener and returns a client
// connection to it; both are closed on cleanup.
func serve(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	register(srv)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial bufconn: %v", err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve: %v", err)
		}
	})
	return conn
}

// The fake servers below answer deterministically from the request, the
// same way in both message families, so a client of either family can check
// every field it gets back.

func lockKey(name []byte, lease int64) []byte { return fmt.Appendf(nil, "%s/%x", name, lease) }

type ourLock struct {
	v3lockpb.UnimplementedLockServer
}

func (ourLock) Lock(_ context.Context, r *v3lockpb.LockRequest) (*v3lockpb.LockResponse, error) {
	return &v3lockpb.LockResponse{Header: &etcdserverpb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: r.Lease + 1, RaftTerm: 3}, Key: lockKey(r.Name, r.Lease)}, nil
}

func (ourLock) Unlock(_ context.Context, r *v3lockpb.UnlockRequest) (*v3lockpb.UnlockResponse, error) {
	return &v3lockpb.UnlockResponse{Header: &etcdserverpb.ResponseHeader{Revision: int64(len(r.Key))}}, nil
}

type ourElection struct {
	v3electionpb.UnimplementedElectionServer
}

func (ourElection) Campaign(_ context.Context, r *v3electionpb.CampaignRequest) (*v3electionpb.CampaignResponse, error) {
	return &v3electionpb.CampaignResponse{
		Header: &etcdserverpb.ResponseHeader{Revision: 10},
		Leader: &v3electionpb.LeaderKey{Name: r.Name, Key: append(lockKey(r.Name, r.Lease), r.Value...), Rev: 10, Lease: r.Lease},
	}, nil
}

func (ourElection) Proclaim(_ context.Context, r *v3electionpb.ProclaimRequest) (*v3electionpb.ProclaimResponse, error) {
	return &v3electionpb.ProclaimResponse{Header: &etcdserverpb.ResponseHeader{Revision: r.Leader.GetRev() + int64(len(r.Value))}}, nil
}

func (ourElection) Leader(_ context.Context, r *v3electionpb.LeaderRequest) (*v3electionpb.LeaderResponse, error) {
	return &v3electionpb.LeaderResponse{Header: &etcdserverpb.ResponseHeader{Revision: 11}, Kv: ourKV(r.Name, 0)}, nil
}

func (ourElection) Observe(r *v3electionpb.LeaderRequest, s v3electionpb.Election_ObserveServer) error {
	for i := range 3 {
		if err := s.Send(&v3electionpb.LeaderResponse{Header: &etcdserverpb.ResponseHeader{Revision: int64(20 + i)}, Kv: ourKV(r.Name, i)}); err != nil {
			return err
		}
	}
	return nil
}

func (ourElection) Resign(_ context.Context, r *v3electionpb.ResignRequest) (*v3electionpb.ResignResponse, error) {
	return &v3electionpb.ResignResponse{Header: &etcdserverpb.ResponseHeader{Revision: r.Leader.GetLease()}}, nil
}

func ourKV(name []byte, i int) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: lockKey(name, 5), CreateRevision: 4, ModRevision: int64(5 + i), Version: int64(1 + i), Value: fmt.Appendf(nil, "v%d", i), Lease: 5}
}

type etcdLockServer struct {
	etcdlock.UnimplementedLockServer
}

func (etcdLockServer) Lock(_ context.Context, r *etcdlock.LockRequest) (*etcdlock.LockResponse, error) {
	return &etcdlock.LockResponse{Header: &etcdserverpb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: r.Lease + 1, RaftTerm: 3}, Key: lockKey(r.Name, r.Lease)}, nil
}

func (etcdLockServer) Unlock(_ context.Context, r *etcdlock.UnlockRequest) (*etcdlock.UnlockResponse, error) {
	return &etcdlock.UnlockResponse{Header: &etcdserverpb.ResponseHeader{Revision: int64(len(r.Key))}}, nil
}

type etcdElectionServer struct {
	etcdelection.UnimplementedElectionServer
}

func (etcdElectionServer) Campaign(_ context.Context, r *etcdelection.CampaignRequest) (*etcdelection.CampaignResponse, error) {
	return &etcdelection.CampaignResponse{
		Header: &etcdserverpb.ResponseHeader{Revision: 10},
		Leader: &etcdelection.LeaderKey{Name: r.Name, Key: append(lockKey(r.Name, r.Lease), r.Value...), Rev: 10, Lease: r.Lease},
	}, nil
}

func (etcdElectionServer) Proclaim(_ context.Context, r *etcdelection.ProclaimRequest) (*etcdelection.ProclaimResponse, error) {
	return &etcdelection.ProclaimResponse{Header: &etcdserverpb.ResponseHeader{Revision: r.Leader.GetRev() + int64(len(r.Value))}}, nil
}

func (etcdElectionServer) Leader(_ context.Context, r *etcdelection.LeaderRequest) (*etcdelection.LeaderResponse, error) {
	return &etcdelection.LeaderResponse{Header: &etcdserverpb.ResponseHeader{Revision: 11}, Kv: ourKV(r.Name, 0)}, nil
}

func (etcdElectionServer) Observe(r *etcdelection.LeaderRequest, s etcdelection.Election_ObserveServer) error {
	for i := range 3 {
		if err := s.Send(&etcdelection.LeaderResponse{Header: &etcdserverpb.ResponseHeader{Revision: int64(20 + i)}, Kv: ourKV(r.Name, i)}); err != nil {
			return err
		}
	}
	return nil
}

func (etcdElectionServer) Resign(_ context.Context, r *etcdelection.ResignRequest) (*etcdelection.ResignResponse, error) {
	return &etcdelection.ResignResponse{Header: &etcdserverpb.ResponseHeader{Revision: r.Leader.GetLease()}}, nil
}

// TestEtcdClientsCallOurServers calls our services with etcd's generated
// clients over gRPC.
func TestEtcdClientsCallOurServers(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) {
		v3lockpb.RegisterLockServer(s, ourLock{})
		v3electionpb.RegisterElectionServer(s, ourElection{})
	})
	ctx := t.Context()
	lock, elect := etcdlock.NewLockClient(conn), etcdelection.NewElectionClient(conn)

	lr, err := lock.Lock(ctx, &etcdlock.LockRequest{Name: []byte("mylock"), Lease: 0x694d7e5b9c3a0f12})
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	wantHeader(t, "Lock", lr.Header, &etcdserverpb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 0x694d7e5b9c3a0f13, RaftTerm: 3})
	wantEqual(t, "Lock key", string(lr.Key), "mylock/694d7e5b9c3a0f12")

	ur, err := lock.Unlock(ctx, &etcdlock.UnlockRequest{Key: lr.Key})
	if err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	wantHeader(t, "Unlock", ur.Header, &etcdserverpb.ResponseHeader{Revision: int64(len(lr.Key))})

	cr, err := elect.Campaign(ctx, &etcdelection.CampaignRequest{Name: []byte("e"), Lease: -7, Value: []byte("v")})
	if err != nil {
		t.Fatalf("Campaign: %v", err)
	}
	wantHeader(t, "Campaign", cr.Header, &etcdserverpb.ResponseHeader{Revision: 10})
	wantEqual(t, "Campaign leader", cr.Leader.String(), (&etcdelection.LeaderKey{Name: []byte("e"), Key: []byte("e/-7v"), Rev: 10, Lease: -7}).String())

	pr, err := elect.Proclaim(ctx, &etcdelection.ProclaimRequest{Leader: cr.Leader, Value: []byte("abc")})
	if err != nil {
		t.Fatalf("Proclaim: %v", err)
	}
	wantHeader(t, "Proclaim", pr.Header, &etcdserverpb.ResponseHeader{Revision: 13})

	ldr, err := elect.Leader(ctx, &etcdelection.LeaderRequest{Name: []byte("e")})
	if err != nil {
		t.Fatalf("Leader: %v", err)
	}
	wantHeader(t, "Leader", ldr.Header, &etcdserverpb.ResponseHeader{Revision: 11})
	wantKV(t, "Leader kv", ldr.Kv, ourKV([]byte("e"), 0))

	obs, err := elect.Observe(ctx, &etcdelection.LeaderRequest{Name: []byte("o")})
	if err != nil {
		t.Fatalf("Observe: %v", err)
	}
	for i := 0; ; i++ {
		r, err := obs.Recv()
		if err == io.EOF {
			wantEqual(t, "Observe responses", i, 3)
			break
		}
		if err != nil {
			t.Fatalf("Observe Recv %d: %v", i, err)
		}
		wantHeader(t, "Observe", r.Header, &etcdserverpb.ResponseHeader{Revision: int64(20 + i)})
		wantKV(t, "Observe kv", r.Kv, ourKV([]byte("o"), i))
	}

	rr, err := elect.Resign(ctx, &etcdelection.ResignRequest{Leader: cr.Leader})
	if err != nil {
		t.Fatalf("Resign: %v", err)
	}
	wantHeader(t, "Resign", rr.Header, &etcdserverpb.ResponseHeader{Revision: -7})
}

// TestOurClientsCallEtcdServers calls etcd's generated services with our
// clients over gRPC.
func TestOurClientsCallEtcdServers(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) {
		etcdlock.RegisterLockServer(s, etcdLockServer{})
		etcdelection.RegisterElectionServer(s, etcdElectionServer{})
	})
	ctx := t.Context()
	lock, elect := v3lockpb.NewLockClient(conn), v3electionpb.NewElectionClient(conn)

	lr, err := lock.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("mylock"), Lease: 0x694d7e5b9c3a0f12})
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	wantHeader(t, "Lock", lr.Header, &etcdserverpb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 0x694d7e5b9c3a0f13, RaftTerm: 3})
	wantEqual(t, "Lock key", string(lr.Key), "mylock/694d7e5b9c3a0f12")

	ur, err := lock.Unlock(ctx, &v3lockpb.UnlockRequest{Key: lr.Key})
	if err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	wantHeader(t, "Unlock", ur.Header, &etcdserverpb.ResponseHeader{Revision: int64(len(lr.Key))})

	cr, err := elect.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("e"), Lease: -7, Value: []byte("v")})
	if err != nil {
		t.Fatalf("Campaign: %v", err)
	}
	wantHeader(t, "Campaign", cr.Header, &etcdserverpb.ResponseHeader{Revision: 10})
	l := cr.Leader
	wantEqual(t, "Campaign leader", fmt.Sprintf("%s %s %d %d", l.Name, l.Key, l.Rev, l.Lease), "e e/-7v 10 -7")

	pr, err := elect.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: cr.Leader, Value: []byte("abc")})
	if err != nil {
		t.Fatalf("Proclaim: %v", err)
	}
	wantHeader(t, "Proclaim", pr.Header, &etcdserverpb.ResponseHeader{Revision: 13})

	ldr, err := elect.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("e")})
	if err != nil {
		t.Fatalf("Leader: %v", err)
	}
	wantHeader(t, "Leader", ldr.Header, &etcdserverpb.ResponseHeader{Revision: 11})
	wantKV(t, "Leader kv", ldr.Kv, ourKV([]byte("e"), 0))

	obs, err := elect.Observe(ctx, &v3electionpb.LeaderRequest{Name: []byte("o")})
	if err != nil {
		t.Fatalf("Observe: %v", err)
	}
	for i := 0; ; i++ {
		r, err := obs.Recv()
		if err == io.EOF {
			wantEqual(t, "Observe responses", i, 3)
			break
		}
		if err != nil {
			t.Fatalf("Observe Recv %d: %v", i, err)
		}
		wantHeader(t, "Observe", r.Header, &etcdserverpb.ResponseHeader{Revision: int64(20 + i)})
		wantKV(t, "Observe kv", r.Kv, ourKV([]byte("o"), i))
	}

	rr, err := elect.Resign(ctx, &v3electionpb.ResignRequest{Leader: cr.Leader})
	if err != nil {
		t.Fatalf("Resign: %v", err)
	}
	wantHeader(t, "Resign", rr.Header, &etcdserverpb.ResponseHeader{Revision: -7})
}

func wantHeader(t *testing.T, what string, got, want *etcdserverpb.ResponseHeader) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("%s header: got %v, want %v", what, got, want)
	}
}

func wantKV(t *testing.T, what string, got, want *mvccpb.KeyValue) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func wantEqual[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}
