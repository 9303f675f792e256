package raftadapter

import (
	"context"
	"errors"
	"fmt"
)

// Errors returned by Node. Callers compare with errors.Is; the returned errors
// usually wrap one of these with detail.
var (
	// ErrStopped means the node has been closed (or failed); it takes no new work.
	// A proposal that was pending when the node stopped may or may not have been
	// committed.
	ErrStopped = errors.New("raftadapter: node stopped")

	// ErrNoLeader means raft dropped the proposal or request because no leader
	// is known (an election is in progress or this member is cut off). The
	// proposal was not appended anywhere; it is safe to retry.
	ErrNoLeader = errors.New("raftadapter: no leader")

	// ErrTimeout means the caller's context deadline passed before the request
	// completed. For a proposal the outcome is unknown: it may still be applied.
	ErrTimeout = errors.New("raftadapter: request timed out")

	// ErrLeaderChanged means leadership moved on before the proposal committed,
	// and the proposal can no longer be applied: every member rejects an entry
	// that was appended in a term other than the one it was proposed in, and this
	// member has already applied an entry of a later term. Safe to retry.
	// It is also returned while a leadership transfer is in progress.
	ErrLeaderChanged = errors.New("raftadapter: leader changed")

	// ErrOutcomeUnknown means this member replaced its log with a snapshot from
	// the leader while the proposal was pending, so it cannot tell whether the
	// proposal is part of that snapshot. Treat it like a timeout.
	ErrOutcomeUnknown = errors.New("raftadapter: proposal outcome unknown")

	// ErrRemoved means this member has been removed from the cluster.
	ErrRemoved = errors.New("raftadapter: member removed from cluster")

	// ErrNotLeader is returned by membership changes and leadership transfer,
	// which only the leader performs.
	ErrNotLeader = errors.New("raftadapter: not the leader")

	// ErrMemberExists is returned when adding a member that is already a voter
	// or learner.
	ErrMemberExists = errors.New("raftadapter: member already exists")

	// ErrUnknownMember is returned when a change names a member that is not in
	// the cluster (or not in the required role).
	ErrUnknownMember = errors.New("raftadapter: unknown member")

	// ErrInvalidConfChange is returned for membership changes raft cannot
	// apply, such as removing the last voter or using id 0.
	ErrInvalidConfChange = errors.New("raftadapter: invalid membership change")

	// ErrBadSnapshot means snapshot data from the leader could not be decoded
	// (wrong format, failed checksum). The node stops with it, as it cannot
	// rebuild its state.
	ErrBadSnapshot = errors.New("raftadapter: bad snapshot data")

	// ErrInvalidConfig is wrapped by Config.Validate and New for bad settings.
	ErrInvalidConfig = errors.New("raftadapter: invalid config")
)

// ctxError turns the end of a caller's context into the error the caller
// sees: ErrTimeout (wrapping context.DeadlineExceeded) for a deadline, the
// context's own error otherwise.
func ctxError(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}
