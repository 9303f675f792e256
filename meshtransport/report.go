package meshtransport

import (
	"maps"
	"slices"
	"sync"

	"go.etcd.io/raft/v3"
)

// reporter collects send outcomes for the handler so that they are reported
// from our own goroutine, never from inside Send (the raft loop).
type reporter struct {
	mu      sync.Mutex
	unreach map[uint64]struct{} // coalesced
	snaps   []snapReport
	wakec   chan struct{}
}

type snapReport struct {
	to     uint64
	status raft.SnapshotStatus
}

// maxSnapReports bounds pending snapshot reports; raft has at most one
// snapshot in flight per follower, so this is never reached in practice.
const maxSnapReports = 4096

func newReporter() *reporter {
	return &reporter{unreach: make(map[uint64]struct{}), wakec: make(chan struct{}, 1)}
}

func (r *reporter) unreachable(id uint64) {
	if id == 0 {
		return
	}
	r.mu.Lock()
	r.unreach[id] = struct{}{}
	r.mu.Unlock()
	signal(r.wakec)
}

func (r *reporter) snapshot(id uint64, st raft.SnapshotStatus) {
	r.mu.Lock()
	if len(r.snaps) < maxSnapReports {
		r.snaps = append(r.snaps, snapReport{to: id, status: st})
	}
	r.mu.Unlock()
	signal(r.wakec)
}

func (r *reporter) take() ([]snapReport, []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	snaps := r.snaps
	r.snaps = nil
	ids := slices.Sorted(maps.Keys(r.unreach))
	clear(r.unreach)
	return snaps, ids
}

// reportLoop is the reporter goroutine: it hands collected outcomes to the
// handler (discarding them while there is none).
func (t *Transport) reportLoop() {
	for {
		select {
		case <-t.stopc:
			return
		case <-t.reports.wakec:
		}
		snaps, ids := t.reports.take()
		h := t.currentHandler()
		if h == nil {
			continue
		}
		for _, s := range snaps {
			t.stats.snapReports.Add(1)
			h.ReportSnapshot(s.to, s.status)
		}
		for _, id := range ids {
			t.stats.unreachableReports.Add(1)
			h.ReportUnreachable(id)
		}
	}
}
