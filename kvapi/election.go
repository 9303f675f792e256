package kvapi

import (
	"context"
	"errors"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/meshkv/meshkv/api/v3electionpb"
)

// ErrMissingLeaderKey is returned by Proclaim and Resign when the request
// carries no leader key (etcd's message).
var ErrMissingLeaderKey = errors.New(`"leader" field must be provided`)

// noLease is the lease of the sessions Leader and Observe use: they write
// nothing, and -1 is never granted by a server (server-chosen ids are
// positive), as etcd does it.
const noLease = -1

// electionServer is etcd's v3election service.
type electionServer struct {
	*Server
	v3electionpb.UnimplementedElectionServer
}

var _ v3electionpb.ElectionServer = electionServer{}

// Campaign waits until the caller's lease leads election name, with value
// as the leader's value.
func (s electionServer) Campaign(ctx context.Context, r *v3electionpb.CampaignRequest) (*v3electionpb.CampaignResponse, error) {
	ctx = s.forwardCaller(ctx)
	sess, err := s.session(ctx, r.Lease)
	if err != nil {
		return nil, err
	}
	e := concurrency.NewElection(sess, string(r.Name))
	if err := e.Campaign(ctx, string(r.Value)); err != nil {
		return nil, err
	}
	return &v3electionpb.CampaignResponse{
		Header: e.Header(),
		Leader: &v3electionpb.LeaderKey{
			Name:  r.Name,
			Key:   []byte(e.Key()),
			Rev:   e.Rev(),
			Lease: int64(sess.Lease()),
		},
	}, nil
}

// resume returns the election led by key k.
func (s electionServer) resume(ctx context.Context, k *v3electionpb.LeaderKey) (*concurrency.Election, error) {
	if k == nil {
		return nil, ErrMissingLeaderKey
	}
	sess, err := s.session(ctx, k.Lease)
	if err != nil {
		return nil, err
	}
	return concurrency.ResumeElection(sess, string(k.Name), string(k.Key), k.Rev), nil
}

// Proclaim sets the leader's value, if the key still leads (else "election:
// not leader").
func (s electionServer) Proclaim(ctx context.Context, r *v3electionpb.ProclaimRequest) (*v3electionpb.ProclaimResponse, error) {
	ctx = s.forwardCaller(ctx)
	e, err := s.resume(ctx, r.Leader)
	if err != nil {
		return nil, err
	}
	if err := e.Proclaim(ctx, string(r.Value)); err != nil {
		return nil, err
	}
	return &v3electionpb.ProclaimResponse{Header: e.Header()}, nil
}

// Resign gives up leadership if the key still leads.
func (s electionServer) Resign(ctx context.Context, r *v3electionpb.ResignRequest) (*v3electionpb.ResignResponse, error) {
	ctx = s.forwardCaller(ctx)
	e, err := s.resume(ctx, r.Leader)
	if err != nil {
		return nil, err
	}
	if err := e.Resign(ctx); err != nil {
		return nil, err
	}
	return &v3electionpb.ResignResponse{Header: e.Header()}, nil
}

// Leader returns the current leader's key-value ("election: no leader" if
// none).
func (s electionServer) Leader(ctx context.Context, r *v3electionpb.LeaderRequest) (*v3electionpb.LeaderResponse, error) {
	ctx = s.forwardCaller(ctx)
	sess, err := s.session(ctx, noLease)
	if err != nil {
		return nil, err
	}
	resp, err := concurrency.NewElection(sess, string(r.Name)).Leader(ctx)
	if err != nil {
		return nil, err
	}
	return &v3electionpb.LeaderResponse{
		Header: resp.Header,
		Kv:     resp.Kvs[0],
	}, nil
}

// Observe streams the leader's key-value each time leadership or the
// leader's value changes, until the client goes away.
func (s electionServer) Observe(r *v3electionpb.LeaderRequest, stream v3electionpb.Election_ObserveServer) error {
	ctx := s.forwardCaller(stream.Context())
	sess, err := s.session(ctx, noLease)
	if err != nil {
		return err
	}
	ch := concurrency.NewElection(sess, string(r.Name)).Observe(ctx)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp, ok := <-ch:
			if !ok {
				return ctx.Err() // nil unless the client went away
			}
			err := stream.Send(&v3electionpb.LeaderResponse{
				Header: resp.Header,
				Kv:     resp.Kvs[0],
			})
			if err != nil {
				return err
			}
		}
	}
}
