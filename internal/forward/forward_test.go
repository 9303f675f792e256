package forward

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// refusingCluster answers every member call with etcd's "member not found".
type refusingCluster struct {
	pb.UnimplementedClusterServer
}

func (refusingCluster) MemberRemove(context.Context, *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	return nil, rpctypes.ErrGRPCMemberNotFound
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// leader starts a gRPC server playing the leader and returns its client URL
// and the connection count.
func leader(t *testing.T) (string, *countingListener) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	srv := grpc.NewServer()
	pb.RegisterClusterServer(srv, refusingCluster{})
	go func() { _ = srv.Serve(cl) }()
	t.Cleanup(srv.Stop)
	return "http://" + l.Addr().String(), cl
}

func TestClientIsReusedAndErrorsKeepTheirStatus(t *testing.T) {
	url, cl := leader(t)
	var c Clients
	t.Cleanup(c.Close)
	for i := range 3 {
		cli, err := c.Client(7, []string{url})
		if err != nil {
			t.Fatalf("Client: %v", err)
		}
		_, err = cli.MemberRemove(context.Background(), 9)
		err = StatusError(err)
		if _, ok := status.FromError(err); !ok || err.Error() != rpctypes.ErrGRPCMemberNotFound.Error() ||
			status.Code(err) != status.Code(rpctypes.ErrGRPCMemberNotFound) {
			t.Fatalf("call %d: error %v (status %v), want the leader's %v", i, err, status.Code(err), rpctypes.ErrGRPCMemberNotFound)
		}
	}
	if n := cl.accepted.Load(); n != 1 {
		t.Errorf("leader accepted %d connections for 3 calls, want 1", n)
	}
}

func TestClientReplacedOnLeaderChangeAndClosed(t *testing.T) {
	url1, _ := leader(t)
	url2, _ := leader(t)
	var c Clients
	a, err := c.Client(1, []string{url1})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := c.Client(1, []string{url1}); b != a {
		t.Error("same leader and URLs: got a new client, want the cached one")
	}
	b, err := c.Client(2, []string{url2})
	if err != nil {
		t.Fatal(err)
	}
	if b == a {
		t.Fatal("new leader: got the old leader's client")
	}
	if len(c.clients) != 1 {
		t.Errorf("%d clients kept, want 1 (the current leader's)", len(c.clients))
	}
	if a.ActiveConnection().GetState().String() != "SHUTDOWN" {
		t.Errorf("old leader's connection is %v, want SHUTDOWN", a.ActiveConnection().GetState())
	}
	if d, _ := c.Client(2, []string{url1}); d == b {
		t.Error("leader's URLs changed: got the client of the old URLs")
	}
	if _, err := c.Client(3, nil); err == nil {
		t.Error("Client without URLs: no error")
	}
	c.Close()
	c.Close()
	if _, err := c.Client(2, []string{url2}); !errors.Is(err, ErrClosed) {
		t.Errorf("Client after Close: %v, want ErrClosed", err)
	}
}

func TestStatusErrorLeavesOtherErrors(t *testing.T) {
	if err := StatusError(context.Canceled); err != context.Canceled {
		t.Errorf("StatusError(context.Canceled) = %v", err)
	}
	if StatusError(nil) != nil {
		t.Error("StatusError(nil) != nil")
	}
}
