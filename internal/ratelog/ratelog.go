// Package ratelog limits log lines per key: one line per key per interval,
// with a count of the lines suppressed in between, and a bounded number of
// keys, so that a hostile or broken peer cannot flood the log or grow the
// limiter without bound.
package ratelog

import (
	"sync"
	"time"
)

// MaxKeys bounds the keys a Limiter tracks. When it is full and no key can
// be dropped, new keys are suppressed without being counted.
const MaxKeys = 1024

// Limiter lets through one log line per key per interval. Safe for
// concurrent use.
type Limiter struct {
	interval time.Duration
	mu       sync.Mutex
	keys     map[string]*state
}

type state struct {
	last       time.Time
	suppressed int
}

// New returns a Limiter letting one line per key through every interval.
func New(interval time.Duration) *Limiter {
	return &Limiter{interval: interval, keys: make(map[string]*state)}
}

// Allow reports whether to log for key now and how many lines were
// suppressed for it since the last one.
func (l *Limiter) Allow(key string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.keys[key]
	if s == nil {
		if len(l.keys) >= MaxKeys {
			l.pruneLocked(now)
			if len(l.keys) >= MaxKeys {
				return false, 0
			}
		}
		s = &state{}
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

// Prune forgets keys that logged nothing for six intervals.
func (l *Limiter) Prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now)
}

func (l *Limiter) pruneLocked(now time.Time) {
	for k, s := range l.keys {
		if now.Sub(s.last) >= 6*l.interval {
			delete(l.keys, k)
		}
	}
}
