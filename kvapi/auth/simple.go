package auth

import (
	"context"
	"crypto/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Simple tokens, as etcd's: "<prefix>.<index>", where the member proposing
// Authenticate picks 16 random letters as prefix and index is the log index
// at which the request applied. Every member registers the token when it
// applies the request, so it works on any member; a member asked about a
// token from an entry it has not applied yet waits for it (up to
// simpleTokenWait). A token expires SimpleTokenTTL after its last use on
// this member (each member counts for itself, as in etcd), within
// simpleTokenResolution.
//
// Lookups are lock-free (sync.Map); a lookup refreshes the expiry at most
// once per simpleTokenResolution, so that the many requests of one client,
// which share a token, do not all write to it. Expired tokens are dropped
// when looked up and, at most once per resolution, in a sweep made when a
// token is registered; no goroutine is needed.

const (
	simpleTokenLetters    = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	simpleTokenPrefixLen  = 16
	simpleTokenResolution = time.Second
	// simpleTokenWait bounds how long a lookup waits for this member to
	// apply the entry that issued the token.
	simpleTokenWait = 5 * time.Second
)

type simpleTokens struct {
	ttl  time.Duration
	now  func() time.Time
	base time.Time // offsets below are durations since base

	enabled atomic.Bool
	tokens  sync.Map // token -> *simpleToken

	sweepMu   sync.Mutex
	lastSweep time.Duration

	appliedIndex atomic.Uint64
	waiting      atomic.Int32 // lookups waiting for an index
	waitMu       sync.Mutex
	waiters      []indexWaiter
}

type simpleToken struct {
	user    string
	expires atomic.Int64 // offset since base
}

type indexWaiter struct {
	index uint64
	ch    chan struct{}
}

var _ tokenProvider = (*simpleTokens)(nil)

func newSimpleTokens(ttl time.Duration, now func() time.Time) *simpleTokens {
	return &simpleTokens{ttl: ttl, now: now, base: now()}
}

func (t *simpleTokens) clock() time.Duration { return t.now().Sub(t.base) }

func (t *simpleTokens) enable() { t.enabled.Store(true) }

func (t *simpleTokens) disable() {
	t.enabled.Store(false)
	t.tokens.Clear()
}

func (t *simpleTokens) invalidateUser(name string) {
	t.tokens.Range(func(k, v any) bool {
		if v.(*simpleToken).user == name {
			t.tokens.Delete(k)
		}
		return true
	})
}

func (t *simpleTokens) genTokenPrefix() (string, error) {
	var b [simpleTokenPrefixLen]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	for i := range b {
		// 256 is not a multiple of 52: the first 52*4 byte values map
		// evenly; the rest are drawn again.
		for b[i] >= 52*4 {
			var one [1]byte
			if _, err := rand.Read(one[:]); err != nil {
				return "", err
			}
			b[i] = one[0]
		}
		b[i] = simpleTokenLetters[b[i]%52]
	}
	return string(b[:]), nil
}

func (t *simpleTokens) assign(index uint64, prefix, user string) (string, error) {
	token := prefix + "." + strconv.FormatUint(index, 10)
	if !t.enabled.Load() {
		return token, nil // as etcd: the token is not registered
	}
	now := t.clock()
	st := &simpleToken{user: user}
	st.expires.Store(int64(now + t.ttl))
	t.tokens.Store(token, st)
	t.sweep(now)
	return token, nil
}

// sweep drops expired tokens, at most once per resolution.
func (t *simpleTokens) sweep(now time.Duration) {
	t.sweepMu.Lock()
	defer t.sweepMu.Unlock()
	if now-t.lastSweep < simpleTokenResolution {
		return
	}
	t.lastSweep = now
	t.tokens.Range(func(k, v any) bool {
		if t.expired(v.(*simpleToken), now) {
			t.tokens.Delete(k)
		}
		return true
	})
}

// expired reports whether a token has outlived its TTL (plus the
// resolution, which the refresh below may have cost it).
func (t *simpleTokens) expired(st *simpleToken, now time.Duration) bool {
	return now > time.Duration(st.expires.Load())+simpleTokenResolution
}

func (t *simpleTokens) sign(string, uint64) (string, error) { return "", ErrAuthFailed }

func (t *simpleTokens) info(ctx context.Context, token string, rev uint64) (*AuthInfo, bool) {
	v, ok := t.tokens.Load(token)
	if !ok {
		// Unknown here: it may come from an entry this member has not
		// applied yet.
		if !t.waitForIssue(ctx, token) {
			return nil, false
		}
		if v, ok = t.tokens.Load(token); !ok {
			return nil, false
		}
	}
	st := v.(*simpleToken)
	now := t.clock()
	if t.expired(st, now) {
		t.tokens.CompareAndDelete(token, v)
		return nil, false
	}
	if exp := now + t.ttl; time.Duration(st.expires.Load()) < exp-simpleTokenResolution {
		st.expires.Store(int64(exp))
	}
	return &AuthInfo{Username: st.user, Revision: rev}, true
}

// waitForIssue waits until this member has applied the log entry that
// issued token, if the token is well formed and names an entry it has not
// applied; it reports whether there is reason to look the token up again.
func (t *simpleTokens) waitForIssue(ctx context.Context, token string) bool {
	prefix, idx, ok := strings.Cut(token, ".")
	if !ok || prefix == "" || strings.Contains(idx, ".") {
		return false
	}
	index, err := strconv.ParseUint(idx, 10, 64)
	if err != nil || index <= t.appliedIndex.Load() {
		return false
	}
	return t.waitApplied(ctx, index)
}

func (t *simpleTokens) applied(index uint64) {
	t.appliedIndex.Store(index)
	if t.waiting.Load() == 0 {
		return
	}
	t.waitMu.Lock()
	kept := t.waiters[:0]
	for _, w := range t.waiters {
		if w.index <= index {
			close(w.ch)
			t.waiting.Add(-1)
		} else {
			kept = append(kept, w)
		}
	}
	clear(t.waiters[len(kept):])
	t.waiters = kept
	t.waitMu.Unlock()
}

// waitApplied waits until this member applied index, for at most
// simpleTokenWait or until ctx ends; it reports whether it did.
func (t *simpleTokens) waitApplied(ctx context.Context, index uint64) bool {
	w := indexWaiter{index: index, ch: make(chan struct{})}
	t.waitMu.Lock()
	// Counted before the index is read: applied stores the index before it
	// reads the count, so one of the two sees the other.
	t.waiting.Add(1)
	if t.appliedIndex.Load() >= index {
		t.waiting.Add(-1)
		t.waitMu.Unlock()
		return true
	}
	t.waiters = append(t.waiters, w)
	t.waitMu.Unlock()

	timer := time.NewTimer(simpleTokenWait)
	defer timer.Stop()
	select {
	case <-w.ch:
		return true
	case <-ctx.Done():
	case <-timer.C:
	}
	t.waitMu.Lock()
	defer t.waitMu.Unlock()
	for i, x := range t.waiters {
		if x.ch == w.ch {
			t.waiters = append(t.waiters[:i], t.waiters[i+1:]...)
			t.waiting.Add(-1)
			return false
		}
	}
	return true // closed between the select and the lock
}
