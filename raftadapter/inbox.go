package raftadapter

import (
	"sync"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// inbox collects work that arrives from other goroutines and must never block
// them: inbound raft messages (bounded, dropped when full), transport reports
// (unbounded but tiny) and cancelled proposals. The raft loop takes everything
// at once when notified, which also batches inbound messages per loop turn.
type inbox struct {
	max     int
	notifyc chan struct{} // capacity 1; a pending value means "look at the inbox"

	mu          sync.Mutex
	msgs        []*raftpb.Message
	unreachable []uint64
	snapReports []snapReport
	cancels     []*waiter
}

type snapReport struct {
	id     uint64
	status raft.SnapshotStatus
}

// inboxBatch is what the loop takes out of the inbox in one go.
type inboxBatch struct {
	msgs        []*raftpb.Message
	unreachable []uint64
	snapReports []snapReport
	cancels     []*waiter
}

func newInbox(max int) *inbox {
	return &inbox{max: max, notifyc: make(chan struct{}, 1)}
}

func (in *inbox) notify() {
	select {
	case in.notifyc <- struct{}{}:
	default:
	}
}

// pushMsg queues m; it reports false when the queue is full and m was dropped.
func (in *inbox) pushMsg(m *raftpb.Message) bool {
	in.mu.Lock()
	if len(in.msgs) >= in.max {
		in.mu.Unlock()
		return false
	}
	in.msgs = append(in.msgs, m)
	in.mu.Unlock()
	in.notify()
	return true
}

func (in *inbox) pushUnreachable(id uint64) {
	in.mu.Lock()
	in.unreachable = append(in.unreachable, id)
	in.mu.Unlock()
	in.notify()
}

func (in *inbox) pushSnapReport(id uint64, status raft.SnapshotStatus) {
	in.mu.Lock()
	in.snapReports = append(in.snapReports, snapReport{id, status})
	in.mu.Unlock()
	in.notify()
}

func (in *inbox) pushCancel(w *waiter) {
	in.mu.Lock()
	in.cancels = append(in.cancels, w)
	in.mu.Unlock()
	in.notify()
}

// take empties the inbox.
func (in *inbox) take() inboxBatch {
	in.mu.Lock()
	b := inboxBatch{msgs: in.msgs, unreachable: in.unreachable, snapReports: in.snapReports, cancels: in.cancels}
	in.msgs, in.unreachable, in.snapReports, in.cancels = nil, nil, nil, nil
	in.mu.Unlock()
	return b
}

// empty reports whether nothing is queued.
func (in *inbox) empty() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.msgs)+len(in.unreachable)+len(in.snapReports)+len(in.cancels) == 0
}
