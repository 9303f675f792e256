package meshtransport

import (
	"maps"
	"slices"
	"sync"
	"time"

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

// logLimiter lets through one log line per key per interval and counts the
// rest, so that a hostile or broken peer cannot flood the log.
type logLimiter struct {
	interval time.Duration
	mu       sync.Mutex
	keys     map[string]*logState
}

type logState struct {
	last       time.Time
	suppressed int
}

const maxLogKeys = 1024

func newLogLimiter(interval time.Duration) *logLimiter {
	return &logLimiter{interval: interval, keys: make(map[string]*logState)}
}

// allow reports whether to log for key now and how many lines were
// suppressed for it since the last one.
func (l *logLimiter) allow(key string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.keys[key]
	if s == nil {
		if len(l.keys) >= maxLogKeys {
			for k, v := range l.keys {
				if now.Sub(v.last) >= l.interval {
					delete(l.keys, k)
				}
			}
			if len(l.keys) >= maxLogKeys {
				return false, 0
			}
		}
		s = &logState{}
		l.keys[key] = s
	}
	if !s.last.IsZero() && now.Sub(s.last) < l.interval {
		s.suppressed++
		return false, 0
	}
	n := s.suppressed
	s.last, s.suppressed = now, 0
	return true, n
}
