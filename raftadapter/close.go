package raftadapter

import (
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
)

// shutdown fails everything still waiting, stops the snapshot writer and
// marks the node stopped.
func (l *loop) shutdown() {
	err := ErrStopped
	if l.fatal != nil {
		err = fmt.Errorf("%w: %w", ErrStopped, l.fatal)
	}
	for _, w := range l.waiters {
		l.resolve(w, result{err: err})
	}
	for _, c := range l.confQueue {
		l.out.results = append(l.out.results, pendingResult{c.w, result{err: err}})
	}
	l.confQueue = nil
	l.failAllReads(err)
	for _, t := range l.transfers {
		l.out.transfers = append(l.out.transfers, pendingTransfer{t, err})
	}
	l.transfers = nil
	close(l.snapJobc)
	l.capture = nil
	l.sends.release(l.c)
	l.sends.waiting = nil
	if l.closeTimer != nil {
		l.closeTimer.Stop()
	}
	for {
		select {
		case p := <-l.n.propc:
			p.w.done <- result{err: err}
			continue
		case r := <-l.n.readc:
			r.done <- err
			continue
		case c := <-l.n.confc:
			c.w.done <- result{err: err}
			continue
		case t := <-l.n.transferc:
			t.done <- err
			continue
		default:
		}
		break
	}
	for _, ack := range l.tickAcks {
		close(ack)
	}
	l.n.fatal = l.fatal
	final := Status{}
	if l.lastPub != nil {
		final = *l.lastPub
	}
	final.Stopped = true
	final.IsLeader = false
	final.Progress = nil
	l.n.status.Store(&final)
	l.n.leadTerm.Store(&leadTerm{term: final.Term})
	l.out.flush()
	l.n.busy.Store(false)
	l.n.notifyChanges(true)
	if l.fatal != nil {
		l.log.Error("raft node stopped after failure", "err", l.fatal)
	} else {
		l.log.Info("raft node stopped")
	}
	close(l.n.donec)
}

// beginClose starts a graceful stop: a leader first hands leadership over.
func (l *loop) beginClose() {
	l.closing = true
	l.handOverOnClose()
}

// handOverOnClose starts the hand-over of a closing leader, once. It runs
// after every turn too, because a candidate that is closing may still win
// its election.
func (l *loop) handOverOnClose() {
	if !l.closing || l.closeTimer != nil || l.removed || l.state != raft.StateLeader {
		return
	}
	l.closeTried = make(map[uint64]bool)
	l.closeTimer = time.NewTimer(l.cfg.CloseTimeout)
	l.retargetClose()
	l.settle()
}

// retargetClose hands leadership to the best voter not tried yet; with none
// left, the close proceeds without a transfer.
func (l *loop) retargetClose() {
	if l.state != raft.StateLeader {
		return
	}
	target := l.transferTarget(l.closeTried)
	if target == 0 {
		l.closeExpired = true
		return
	}
	l.closeTarget = target
	l.closeTried[target] = true
	l.log.Info("closing: transferring leadership", "to", fmt.Sprintf("%x", target))
	l.rn.TransferLeader(target)
}
