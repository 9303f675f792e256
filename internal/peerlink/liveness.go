package peerlink

import (
	"math"
	"time"
)

// This file holds the two clock-free state machines: liveness (one per link)
// and dialPlan (one per Node, over its dial targets). Time is an input: the
// Node's clock goroutine feeds them time.Now(), tests feed logical time.

// Tuning constants of the hysteresis.
const (
	// gapHalfLife is how fast the remembered largest gap between arrivals
	// fades.
	gapHalfLife = 30 * time.Second
	// penaltyHalfLife is how fast the flap penalty fades.
	penaltyHalfLife = 30 * time.Second
	// flapWindow: a link declared dead less than this after it came up
	// doubles the peer's penalty. It is short on purpose: a link that
	// carried traffic for seconds and then went silent was cut, and a cut
	// that follows another one a few seconds later (a fault moving around
	// the network) must be detected as fast as the first; links that
	// really flap die well within it, and quickReturn catches verdicts
	// that the peer's quick return proves wrong.
	flapWindow = 2 * time.Second
	// quickReturn: a link that comes up less than this after a dead
	// verdict on the peer's previous link (ours, or the peer's, which we
	// see as a lost connection) doubles the penalty too: the verdict was
	// probably wrong (a stalled peer, not a dead path).
	quickReturn = 2 * time.Second
	// starvedTicks: a tick that comes this many tick intervals late means
	// our own process was not scheduled; it gives no verdict, because our
	// reader may not have run either.
	starvedTicks = 3
)

// liveParams are the liveness settings of a Node.
type liveParams struct {
	pingInterval time.Duration
	deadMin      time.Duration // Config.DeadAfter
	deadMax      time.Duration // Config.DeadAfterMax
	tick         time.Duration // the clock's tick interval
}

// peerHistory is what liveness remembers about a peer across its links.
type peerHistory struct {
	penalty float64       // multiplies deadMin; 1 means no penalty
	gapHigh time.Duration // decaying maximum gap between arrivals
	at      time.Time     // when penalty and gapHigh were last updated
	deadAt  time.Time     // when the last link was declared dead or lost; zero if it was not
}

// raise doubles the penalty, up to the one that makes deadMin deadMax.
func (h *peerHistory) raise(p liveParams) {
	h.penalty = min(h.penalty*2, float64(p.deadMax)/float64(p.deadMin))
}

// decay fades the history to now.
func (h *peerHistory) decay(now time.Time) {
	if h.penalty < 1 {
		h.penalty = 1
	}
	if h.at.IsZero() || !now.After(h.at) {
		h.at = now
		return
	}
	dt := now.Sub(h.at)
	h.gapHigh = time.Duration(float64(h.gapHigh) * math.Exp2(-float64(dt)/float64(gapHalfLife)))
	h.penalty = 1 + (h.penalty-1)*math.Exp2(-float64(dt)/float64(penaltyHalfLife))
	h.at = now
}

// faded reports whether the history carries no information any more.
func (h *peerHistory) faded() bool {
	return h.penalty < 1.01 && h.gapHigh < time.Millisecond && (h.deadAt.IsZero() || h.at.Sub(h.deadAt) > quickReturn)
}

// liveness decides when a link is dead and when to ping. A link is dead
// after a silence longer than its threshold:
//
//	threshold = clamp(max(deadMin*penalty, 1.5*gapHigh + rtt), deadMin, deadMax)
//
// gapHigh is the largest gap between arrivals seen recently (fading with
// gapHalfLife), rtt the smoothed ping round trip, and penalty doubles each
// time a link to the peer is declared dead within flapWindow of coming up,
// and each time a new link comes up within quickReturn of a dead verdict
// (fading with penaltyHalfLife). So a link to a peer whose records come
// late under load, or that flapped, gets a more patient verdict.
type liveness struct {
	p        liveParams
	hist     peerHistory
	upAt     time.Time
	lastRecv time.Time
	lastTick time.Time
	lastPing time.Time
	pingID   uint64
	pingAt   time.Time // when ping pingID was sent
	rtt      time.Duration
	dead     bool
}

func newLiveness(p liveParams, hist peerHistory, now time.Time) *liveness {
	hist.decay(now)
	if !hist.deadAt.IsZero() && now.Sub(hist.deadAt) < quickReturn {
		hist.raise(p)
	}
	hist.deadAt = time.Time{}
	return &liveness{p: p, hist: hist, upAt: now, lastRecv: now, lastTick: now}
}

// received records that a record arrived at the given time. Calls may be
// coarse (the latest arrival per tick): gaps are measured between distinct
// arrival times.
func (l *liveness) received(at time.Time) {
	if !at.After(l.lastRecv) {
		return
	}
	if gap := at.Sub(l.lastRecv); gap > l.hist.gapHigh {
		l.hist.gapHigh = gap
	}
	l.lastRecv = at
}

// pong records the answer to ping id received at the given time and returns
// the round trip sample; ok is false for an unknown or stale id.
func (l *liveness) pong(id uint64, at time.Time) (time.Duration, bool) {
	if id != l.pingID || l.pingAt.IsZero() || at.Before(l.pingAt) {
		return 0, false
	}
	sample := at.Sub(l.pingAt)
	l.pingAt = time.Time{}
	if l.rtt == 0 {
		l.rtt = sample
	} else {
		l.rtt = (7*l.rtt + sample) / 8
	}
	return sample, true
}

// threshold is the silence after which the link is dead.
func (l *liveness) threshold() time.Duration {
	t := time.Duration(float64(l.p.deadMin) * l.hist.penalty)
	if a := l.hist.gapHigh*3/2 + l.rtt; a > t {
		t = a
	}
	return min(max(t, l.p.deadMin), l.p.deadMax)
}

// tickResult is what the clock must do for a link.
type tickResult struct {
	ping   bool   // send PING pingID
	pingID uint64 // valid when ping
	dead   bool   // declare the link dead (reported once)
}

// tick advances the link to now.
func (l *liveness) tick(now time.Time) tickResult {
	var r tickResult
	if l.dead {
		return r
	}
	late := l.p.tick > 0 && now.Sub(l.lastTick) > starvedTicks*l.p.tick
	l.lastTick = now
	l.hist.decay(now)
	if !late && now.Sub(l.lastRecv) > l.threshold() {
		l.dead = true
		r.dead = true
		return r
	}
	if l.lastPing.IsZero() || now.Sub(l.lastPing) >= l.p.pingInterval {
		l.lastPing = now
		l.pingID++
		l.pingAt = now
		r.ping, r.pingID = true, l.pingID
	}
	return r
}

// linkEnd is how a link ended, as far as liveness cares.
type linkEnd uint8

const (
	// endOther: closed on purpose (shutdown, a duplicate, the peer's
	// CLOSE record).
	endOther linkEnd = iota
	// endLost: the connection broke under us without a word from the
	// peer: a reset or a bare FIN, most often the peer's own dead verdict.
	endLost
	// endDead: our own dead verdict.
	endDead
)

// down returns the peer's history after the link ended at now.
//
// A link that ends by our dead verdict within flapWindow of coming up
// raises the penalty. A link that ends by our verdict or by a lost
// connection marks the time, so that a new link coming up within
// quickReturn raises it too: the verdict, ours or the peer's, was
// probably wrong. Counting the peer's verdicts (we see them as a reset)
// keeps both ends equally patient after a false verdict; otherwise the
// end that did not declare it stays at DeadAfter and declares the next
// one.
func (l *liveness) down(now time.Time, end linkEnd) peerHistory {
	h := l.hist
	h.decay(now)
	switch end {
	case endDead:
		h.deadAt = now
		if now.Sub(l.upAt) < flapWindow {
			h.raise(l.p)
		}
	case endLost:
		h.deadAt = now
	}
	return h
}

// dialParams are the redial settings of a Node.
type dialParams struct {
	interval     time.Duration // Config.RedialInterval
	max          time.Duration // Config.RedialMax
	backoffAfter time.Duration // Config.BackoffAfter
	maxInFlight  int
}

// dialOutcome classifies the end of a dial attempt.
type dialOutcome int

const (
	dialOK      dialOutcome = iota // a link came up (or the peer is already linked)
	dialFailed                     // unreachable, timeout, connection error
	dialRefused                    // the peer or we refused (certificate, cluster, Authorize)
	dialSelf                       // the address is our own
)

// target is one dial target.
type target struct {
	key          PublicKey // the key last seen at this address
	hasKey       bool
	self         bool
	inFlight     int
	lastAttempt  time.Time
	failingSince time.Time     // zero while not failing
	backoff      time.Duration // current interval once backing off
	lastErr      string        // why the last attempt failed; "" after a success
}

// dialPlan decides when to dial which target. It dials a target when no
// link to the key last seen there is up, at most maxInFlight attempts at a
// time, every interval, and at once when such a link goes down. Targets
// failing for longer than backoffAfter, or refusing us, are retried with
// an interval doubling up to max. A target that turned out to be ourselves
// is never dialled again.
type dialPlan struct {
	p       dialParams
	targets map[string]*target
	order   []string // targets in SetTargets order, for deterministic output
}

func newDialPlan(p dialParams) *dialPlan {
	return &dialPlan{p: p, targets: make(map[string]*target)}
}

// set replaces the target list, keeping the state of targets that stay.
// self lists addresses known to be ours.
func (d *dialPlan) set(addrs []string, self func(string) bool) {
	next := make(map[string]*target, len(addrs))
	d.order = d.order[:0]
	for _, a := range addrs {
		if _, dup := next[a]; dup {
			continue
		}
		t := d.targets[a]
		if t == nil {
			t = &target{}
		}
		if self(a) {
			t.self = true
		}
		next[a] = t
		d.order = append(d.order, a)
	}
	d.targets = next
}

// due returns the targets to dial now and counts each as in flight.
// linked reports whether a link to a key is up.
func (d *dialPlan) due(now time.Time, linked func(PublicKey) bool) []string {
	var out []string
	for _, a := range d.order {
		t := d.targets[a]
		if t.hasKey && linked(t.key) {
			// Healthy: failures of attempts still in flight do not count.
			t.failingSince, t.backoff = time.Time{}, 0
			continue
		}
		if t.self || t.inFlight >= d.p.maxInFlight {
			continue
		}
		interval := d.p.interval
		if t.backoff > 0 {
			interval = t.backoff
		}
		if !t.lastAttempt.IsZero() && now.Sub(t.lastAttempt) < interval {
			continue
		}
		t.inFlight++
		t.lastAttempt = now
		out = append(out, a)
	}
	return out
}

// result ends an attempt to addr; key is valid for dialOK and dialRefused
// when the peer's key is known.
func (d *dialPlan) result(addr string, now time.Time, out dialOutcome, key PublicKey, hasKey bool) {
	t := d.targets[addr]
	if t == nil {
		return // removed meanwhile
	}
	if t.inFlight > 0 {
		t.inFlight--
	}
	if hasKey {
		t.key, t.hasKey = key, true
	}
	switch out {
	case dialOK:
		t.failingSince, t.backoff, t.lastErr = time.Time{}, 0, ""
	case dialSelf:
		t.self = true
	case dialFailed, dialRefused:
		if t.failingSince.IsZero() {
			t.failingSince = now
		}
		if out == dialRefused || now.Sub(t.failingSince) >= d.p.backoffAfter {
			t.backoff = min(max(2*t.backoff, d.p.interval), d.p.max)
		}
	}
}

// learn records that key is reachable at addr (a peer's advertised
// address), so the address is not dialled while that link is up.
func (d *dialPlan) learn(addr string, key PublicKey) {
	if t := d.targets[addr]; t != nil && !t.self {
		t.key, t.hasKey = key, true
	}
}

// linkDown makes every target where key was seen due at once.
func (d *dialPlan) linkDown(key PublicKey) {
	for _, t := range d.targets {
		if t.hasKey && t.key == key {
			t.lastAttempt = time.Time{}
		}
	}
}
