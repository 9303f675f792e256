package kvapi

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Clients may ask that a request only be served while the member has a
// leader (clientv3.WithRequireLeader, which clientv3 also sets on its lease
// keepalive streams). As etcd does, such a request is refused with "no
// leader" when the member has none, and such a stream is ended with "no
// leader" once the member has been without a leader for LeaderLossTimeout,
// so that the client moves to a member that can serve it: a watch through a
// cut-off member would otherwise miss every later event silently.

// errLeaderLost is the cancel cause of require-leader streams.
var errLeaderLost = errors.New("kvapi: member lost its leader")

// requireLeader tracks the open require-leader streams.
type requireLeader struct {
	mu      sync.Mutex
	streams map[*context.CancelCauseFunc]struct{}
}

func wantsLeader(ctx context.Context) bool {
	// ValueFromIncomingContext does not copy the whole metadata map, as
	// FromIncomingContext does (that copy was 6% of a loaded node's
	// allocations).
	v := metadata.ValueFromIncomingContext(ctx, rpctypes.MetadataRequireLeaderKey)
	return len(v) > 0 && v[0] == rpctypes.MetadataHasLeader
}

func (s *Server) hasLeader() bool {
	leader, _ := s.cluster.LeaderTerm()
	return leader != 0
}

func (s *Server) unaryRequireLeader(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !s.hasLeader() && wantsLeader(ctx) {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	return handler(ctx, req)
}

func (s *Server) streamRequireLeader(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !wantsLeader(ss.Context()) {
		return handler(srv, ss)
	}
	if !s.hasLeader() {
		return rpctypes.ErrGRPCNoLeader
	}
	ctx, cancel := context.WithCancelCause(ss.Context())
	defer cancel(nil)
	rl := &s.requireLeader
	rl.mu.Lock()
	if rl.streams == nil {
		rl.streams = map[*context.CancelCauseFunc]struct{}{}
	}
	rl.streams[&cancel] = struct{}{}
	rl.mu.Unlock()
	defer func() {
		rl.mu.Lock()
		delete(rl.streams, &cancel)
		rl.mu.Unlock()
	}()
	err := handler(srv, ctxStream{ServerStream: ss, ctx: ctx})
	if errors.Is(context.Cause(ctx), errLeaderLost) {
		return rpctypes.ErrGRPCNoLeader
	}
	return err
}

// ctxStream is a server stream with a context of our own.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c ctxStream) Context() context.Context { return c.ctx }

// monitorLeader ends the require-leader streams once the member has had no
// leader for LeaderLossTimeout, until ctx ends.
func (s *Server) monitorLeader(ctx context.Context) {
	const checks = 3
	t := time.NewTicker(s.cfg.LeaderLossTimeout / checks)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.hasLeader() {
			missed = 0
			continue
		}
		if missed++; missed < checks {
			continue
		}
		rl := &s.requireLeader
		rl.mu.Lock()
		for cancel := range rl.streams {
			(*cancel)(errLeaderLost)
		}
		rl.mu.Unlock()
	}
}
