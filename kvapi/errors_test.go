package kvapi

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// Every sentinel, wrapped as callers wrap it, becomes etcd's gRPC error; a
// gRPC status error (a leader's answer to a forwarded call) passes through.
func TestTogRPCError(t *testing.T) {
	forwarded := status.Error(codes.FailedPrecondition, "etcdserver: learner has not caught up")
	for _, tc := range []struct {
		err, want error
	}{
		{fmt.Errorf("%w: x", mvcc.ErrCompacted), rpctypes.ErrGRPCCompacted},
		{fmt.Errorf("%w: raft", ErrNoLeader), rpctypes.ErrGRPCNoLeader},
		{fmt.Errorf("%w: raft", ErrTimeout), rpctypes.ErrGRPCTimeout},
		{fmt.Errorf("%w: 9", ErrMemberNotFound), rpctypes.ErrGRPCMemberNotFound},
		{fmt.Errorf("%w: 9", ErrMemberExists), rpctypes.ErrGRPCMemberExist},
		{fmt.Errorf("%w: 9", ErrMemberNotLearner), rpctypes.ErrGRPCMemberNotLearner},
		{fmt.Errorf("%w: 9", ErrLearnerNotReady), rpctypes.ErrGRPCLearnerNotReady},
		{fmt.Errorf("%w: 9", ErrNotLeader), rpctypes.ErrGRPCNotLeader},
		{fmt.Errorf("%w: 9", ErrTooFewVoters), rpctypes.ErrGRPCMemberNotEnoughStarted},
		{fmt.Errorf("%w: 9", ErrBadLeaderTransferee), rpctypes.ErrGRPCBadLeaderTransferee},
		{forwarded, forwarded},
		{context.Canceled, rpctypes.ErrGRPCCanceled},
	} {
		if got := togRPCError(context.Background(), tc.err); !errors.Is(got, tc.want) {
			t.Errorf("togRPCError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if got := togRPCError(context.Background(), errors.New("odd")); status.Code(got) != codes.Unknown {
		t.Errorf("unmapped error: code %v, want Unknown", status.Code(got))
	}
}
