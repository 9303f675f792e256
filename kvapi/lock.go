package kvapi

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshkv/meshkv/api/v3electionpb"
	"github.com/meshkv/meshkv/api/v3lockpb"
)

// The Lock and Election services are clients of this member's own KV, Lease
// and Watch services (as etcd builds them), acting with their caller's
// credentials (Server.forwardCaller): a lock is a concurrency.Mutex on
// the lock name, held by a key under the caller's lease; an election is a
// concurrency.Election. Errors pass through as etcd passes them, so clients
// see etcd's codes (mostly Unknown with etcd's message).

func (s *Server) registerLockElection(g *grpc.Server) {
	v3lockpb.RegisterLockServer(g, lockServer{Server: s})
	v3electionpb.RegisterElectionServer(g, electionServer{Server: s})
}

// errNoClient is returned by Lock and Election calls made before UseClient.
var errNoClient = status.Error(codes.Unavailable, "meshkv: lock and election services have no client yet")

// ownClient returns the member's client for the Lock and Election services.
func (s *Server) ownClient() (*clientv3.Client, error) {
	if s.client == nil {
		return nil, errNoClient
	}
	return s.client, nil
}

// session returns a session on an existing lease that is not kept alive:
// the caller owns the lease and its keepalives.
func (s *Server) session(ctx context.Context, lease int64) (*concurrency.Session, error) {
	c, err := s.ownClient()
	if err != nil {
		return nil, err
	}
	sess, err := concurrency.NewSession(c,
		concurrency.WithLease(clientv3.LeaseID(lease)),
		concurrency.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	sess.Orphan()
	return sess, nil
}

// lockServer is etcd's v3lock service.
type lockServer struct {
	*Server
	v3lockpb.UnimplementedLockServer
}

var _ v3lockpb.LockServer = lockServer{}

// Lock waits until the caller holds the lock name, under its lease, and
// returns the lock key (name/<lease hex>). Locking again with the same lease
// returns at once.
func (s lockServer) Lock(ctx context.Context, r *v3lockpb.LockRequest) (*v3lockpb.LockResponse, error) {
	ctx = s.forwardCaller(ctx)
	sess, err := s.session(ctx, r.Lease)
	if err != nil {
		return nil, err
	}
	m := concurrency.NewMutex(sess, string(r.Name))
	if err := m.Lock(ctx); err != nil {
		return nil, err
	}
	return &v3lockpb.LockResponse{Header: m.Header(), Key: []byte(m.Key())}, nil
}

// Unlock deletes the lock key.
func (s lockServer) Unlock(ctx context.Context, r *v3lockpb.UnlockRequest) (*v3lockpb.UnlockResponse, error) {
	ctx = s.forwardCaller(ctx)
	c, err := s.ownClient()
	if err != nil {
		return nil, err
	}
	resp, err := c.Delete(ctx, string(r.Key))
	if err != nil {
		return nil, err
	}
	return &v3lockpb.UnlockResponse{Header: resp.Header}, nil
}
