package raftadapter

import (
	"context"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/tracker"
)

// transferRequest is one TransferLeadership call.
type transferRequest struct {
	ctx  context.Context
	to   uint64
	done chan error // capacity 1

	issuedTick uint64 // owned by the raft loop
}

func (l *loop) addTransfer(t *transferRequest) {
	var err error
	switch {
	case l.closing:
		err = ErrStopped
	case l.removed:
		err = ErrRemoved
	case t.to == 0:
		err = fmt.Errorf("%w: bad member id 0", ErrUnknownMember)
	case t.to == l.lead:
		err = nil
	case l.state != raft.StateLeader:
		err = fmt.Errorf("%w: leader is %x", ErrNotLeader, l.lead)
	case !slices.Contains(l.voters, t.to):
		err = fmt.Errorf("%w: %x is not a voter", ErrUnknownMember, t.to)
	default:
		l.log.Info("transferring leadership", "to", fmt.Sprintf("%x", t.to))
		l.rn.TransferLeader(t.to)
		t.issuedTick = l.ticks
		l.transfers = append(l.transfers, t)
		return
	}
	t.done <- err
}

// checkTransfers answers transfers that completed or can no longer complete.
func (l *loop) checkTransfers() {
	keep := l.transfers[:0]
	for _, t := range l.transfers {
		switch {
		case t.ctx.Err() != nil:
			// The caller already returned.
		case l.lead == t.to:
			l.out.transfers = append(l.out.transfers, pendingTransfer{t, nil})
		case l.state != raft.StateLeader && l.lead != 0:
			l.out.transfers = append(l.out.transfers, pendingTransfer{t,
				fmt.Errorf("%w: %x leads instead of %x", ErrLeaderChanged, l.lead, t.to)})
		default:
			keep = append(keep, t)
			continue
		}
	}
	clear(l.transfers[len(keep):])
	l.transfers = keep
}

// retryTransfers re-issues a transfer raft gave up on (it aborts one that
// does not finish within an election timeout) while the caller still waits.
func (l *loop) retryTransfers() bool {
	if len(l.transfers) == 0 || l.state != raft.StateLeader || l.rn.BasicStatus().LeadTransferee != 0 {
		return false
	}
	for _, t := range l.transfers {
		if l.ticks > t.issuedTick && slices.Contains(l.voters, t.to) {
			t.issuedTick = l.ticks
			l.rn.TransferLeader(t.to)
			return true
		}
	}
	return false
}

// transferTarget picks, among recently active voters not in exclude and not
// reported unreachable since last heard from, the one with the highest
// match index.
func (l *loop) transferTarget(exclude map[uint64]bool) uint64 {
	var best, bestMatch uint64
	l.rn.WithProgress(func(id uint64, typ raft.ProgressType, pr tracker.Progress) {
		if id == l.id || typ != raft.ProgressTypePeer || !pr.RecentActive || exclude[id] {
			return
		}
		if l.unreached[id] > l.heard[id] {
			return
		}
		if best == 0 || pr.Match > bestMatch || (pr.Match == bestMatch && id < best) {
			best, bestMatch = id, pr.Match
		}
	})
	return best
}
