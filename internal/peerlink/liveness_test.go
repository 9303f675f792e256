package peerlink

import (
	"math/rand/v2"
	"testing"
	"time"
)

var testLive = liveParams{
	pingInterval: 50 * time.Millisecond,
	deadMin:      250 * time.Millisecond,
	deadMax:      2 * time.Second,
	tick:         25 * time.Millisecond,
}

var t0 = time.Unix(1_000_000, 0)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestLivenessTable(t *testing.T) {
	type step struct {
		at      int   // ms after t0
		recv    []int // arrivals (ms after t0) fed before the tick
		pong    int   // if > 0: the pong for the latest ping arrives at this ms
		dead    bool  // want a dead verdict at this tick
		ping    bool  // want a ping at this tick
		thresMS int   // if > 0: want this threshold after the tick
	}
	for _, tc := range []struct {
		name  string
		hist  peerHistory
		steps []step
	}{
		{
			name: "silence from the start: dead just after DeadAfter",
			steps: []step{
				{at: 0, ping: true},
				{at: 225, ping: true},
				{at: 250},
				{at: 275, dead: true},
				{at: 300},
			},
		},
		{
			name: "regular arrivals keep it alive and pings go out every interval",
			steps: []step{
				{at: 0, ping: true},
				{at: 25},
				{at: 50, recv: []int{40}, ping: true},
				{at: 75},
				{at: 100, recv: []int{90}, ping: true, thresMS: 250},
				{at: 300, recv: []int{290}, ping: true},
				{at: 525, recv: []int{510}, ping: true, thresMS: 330},
			},
		},
		{
			name: "a large gap raises the threshold",
			steps: []step{
				{at: 0, ping: true},
				{at: 200, recv: []int{200}, ping: true, thresMS: 300},
				{at: 450, ping: true},
				{at: 500, dead: true},
			},
		},
		{
			name: "round trip counts in the threshold",
			steps: []step{
				{at: 0, ping: true},
				{at: 25, recv: []int{20}, pong: 20},
				{at: 50, recv: []int{50}, ping: true},
				{at: 100, recv: []int{100}, pong: 100, ping: true, thresMS: 250},
			},
		},
		{
			name: "a late tick gives no verdict",
			steps: []step{
				{at: 0, ping: true},
				{at: 25},
				{at: 400, ping: true}, // we were not scheduled for 375ms
				{at: 425, dead: true}, // the next regular tick decides
			},
		},
		{
			name: "penalty from flapping",
			hist: peerHistory{penalty: 4, at: t0},
			steps: []step{
				{at: 0, ping: true, thresMS: 1000},
				{at: 975, ping: true},
				{at: 1025, dead: true},
			},
		},
		{
			name: "threshold never exceeds DeadAfterMax",
			hist: peerHistory{penalty: 100, gapHigh: time.Hour, at: t0},
			steps: []step{
				{at: 0, ping: true, thresMS: 2000},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLiveness(testLive, tc.hist, t0)
			for _, s := range tc.steps {
				now := t0.Add(ms(s.at))
				for _, r := range s.recv {
					l.received(t0.Add(ms(r)))
				}
				if s.pong > 0 {
					if _, ok := l.pong(l.pingID, t0.Add(ms(s.pong))); !ok {
						t.Fatalf("at %dms: pong not matched", s.at)
					}
				}
				r := l.tick(now)
				if r.dead != s.dead || r.ping != s.ping {
					t.Fatalf("at %dms: dead %v ping %v, want dead %v ping %v (threshold %v)",
						s.at, r.dead, r.ping, s.dead, s.ping, l.threshold())
				}
				if s.thresMS > 0 {
					if got := l.threshold(); got < ms(s.thresMS-10) || got > ms(s.thresMS+10) {
						t.Fatalf("at %dms: threshold %v, want %dms (±10ms)", s.at, got, s.thresMS)
					}
				}
			}
		})
	}
}

func TestLivenessPong(t *testing.T) {
	l := newLiveness(testLive, peerHistory{}, t0)
	r := l.tick(t0)
	if _, ok := l.pong(r.pingID+1, t0.Add(ms(5))); ok {
		t.Fatal("pong for an unsent ping accepted")
	}
	if rtt, ok := l.pong(r.pingID, t0.Add(ms(8))); !ok || rtt != ms(8) {
		t.Fatalf("rtt %v %v, want 8ms", rtt, ok)
	}
	if _, ok := l.pong(r.pingID, t0.Add(ms(9))); ok {
		t.Fatal("second pong for the same ping accepted")
	}
	r = l.tick(t0.Add(ms(50)))
	l.pong(r.pingID, t0.Add(ms(66)))
	if want := (7*ms(8) + ms(16)) / 8; l.rtt != want {
		t.Fatalf("smoothed rtt %v, want %v", l.rtt, want)
	}
}

func TestLivenessFlapPenalty(t *testing.T) {
	h := peerHistory{}
	now := t0
	// Three links in a row die within a second of coming up (each comes up
	// well after the previous verdict).
	for i, want := range []float64{2, 4, 8} {
		now = now.Add(quickReturn + time.Second)
		l := newLiveness(testLive, h, now)
		now = now.Add(time.Second)
		h = l.down(now, endDead)
		if h.penalty < want*0.85 || h.penalty > want {
			t.Fatalf("after flap %d: penalty %.2f, want about %v", i+1, h.penalty, want)
		}
	}
	// A link that comes up right after a verdict doubles it too.
	quick := peerHistory{penalty: 2, at: now, deadAt: now}
	if l := newLiveness(testLive, quick, now.Add(100*time.Millisecond)); l.hist.penalty < 3.9 || l.hist.penalty > 4 {
		t.Fatalf("quick return: penalty %.2f, want about 4", l.hist.penalty)
	}
	if l := newLiveness(testLive, quick, now.Add(quickReturn+time.Second)); l.hist.penalty > 2 {
		t.Fatalf("slow return: penalty %.2f, want at most 2", l.hist.penalty)
	}
	// Capped at DeadAfterMax/DeadAfter.
	for range 5 {
		h = newLiveness(testLive, h, now).down(now.Add(time.Second), endDead)
	}
	if max := float64(testLive.deadMax) / float64(testLive.deadMin); h.penalty > max {
		t.Fatalf("penalty %.2f above the cap %.0f", h.penalty, max)
	}
	// A link that lived long, or ended for another reason, adds nothing.
	h.penalty = 3
	h.deadAt = time.Time{}
	before := h.penalty
	h2 := newLiveness(testLive, h, now).down(now.Add(flapWindow+time.Second), endDead)
	h3 := newLiveness(testLive, h, now).down(now.Add(time.Second), endOther)
	if h2.penalty > before || h3.penalty > before {
		t.Fatalf("penalty grew: %.2f, %.2f from %.2f", h2.penalty, h3.penalty, before)
	}
	// It halves every penaltyHalfLife while stable.
	l := newLiveness(testLive, peerHistory{penalty: 5, at: now}, now)
	for at := time.Duration(0); at <= penaltyHalfLife; at += testLive.tick {
		l.received(now.Add(at))
		l.tick(now.Add(at))
	}
	if p := l.hist.penalty; p < 2.9 || p > 3.1 {
		t.Fatalf("penalty after one half-life: %.2f, want about 3", p)
	}
}

// simResult is what a seeded simulation of one peer relationship saw.
type simResult struct {
	verdicts   []time.Duration // times of dead verdicts
	maxPerSec  int             // most verdicts within any one second
	cutVerdict time.Duration   // delay from the cut to the verdict; -1 if none
}

// simulate runs liveness on logical time for a link whose peer sends a
// record about every 25ms (its pings and pongs interleaved). With
// probability stallP per record the peer stalls for up to stallMax (a
// loaded machine), and with probability ourStallP per tick our own process
// stalls for up to stallMax. A dead verdict replaces the link 100ms later
// (redial and handshake), or once the peer is responsive again, carrying
// the history over. At cutAt (if > 0)
// the path goes silent for good.
func simulate(seed uint64, dur time.Duration, stallP, ourStallP float64, stallMax, cutAt time.Duration) simResult {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e37))
	p := testLive
	res := simResult{cutVerdict: -1}
	hist := peerHistory{}
	l := newLiveness(p, hist, t0)
	nextArrival := time.Duration(0)
	seen := time.Duration(0) // latest arrival the reader processed
	now := time.Duration(0)
	for now < dur {
		step := p.tick
		if rng.Float64() < ourStallP {
			step += time.Duration(rng.Int64N(int64(stallMax)))
		}
		// Our reader processes arrivals up to the start of a stall of ours.
		limit := now + p.tick
		now += step
		for nextArrival <= limit && (cutAt == 0 || nextArrival < cutAt) {
			seen = nextArrival
			gap := 25*time.Millisecond + time.Duration(rng.Int64N(int64(10*time.Millisecond)))
			if rng.Float64() < stallP {
				gap += time.Duration(rng.Int64N(int64(stallMax)))
			}
			nextArrival += gap
		}
		l.received(t0.Add(seen))
		if r := l.tick(t0.Add(now)); r.dead {
			res.verdicts = append(res.verdicts, now)
			if cutAt > 0 && now >= cutAt && res.cutVerdict < 0 {
				res.cutVerdict = now - cutAt
				return res
			}
			hist = l.down(t0.Add(now), endDead)
			now = max(now+100*time.Millisecond, nextArrival)
			l = newLiveness(p, hist, t0.Add(now))
			seen = now
		}
	}
	for i := range res.verdicts {
		n := 0
		for j := i; j < len(res.verdicts) && res.verdicts[j]-res.verdicts[i] < time.Second; j++ {
			n++
		}
		res.maxPerSec = max(res.maxPerSec, n)
	}
	return res
}

func TestLivenessSimulationHealthyIsQuiet(t *testing.T) {
	for seed := range uint64(20) {
		r := simulate(seed, 10*time.Minute, 0, 0, 0, 0)
		if len(r.verdicts) != 0 {
			t.Fatalf("seed %d: %d dead verdicts on a healthy link", seed, len(r.verdicts))
		}
	}
}

func TestLivenessSimulationLoadedDoesNotFlap(t *testing.T) {
	// A loaded machine: every 200th record stalls up to 600ms, and one
	// tick in 200 of ours is late by up to 600ms.
	total := 0
	for seed := range uint64(20) {
		r := simulate(seed, 10*time.Minute, 0.005, 0.005, 600*time.Millisecond, 0)
		total += len(r.verdicts)
		if r.maxPerSec > 2 {
			t.Errorf("seed %d: %d verdicts within one second (all: %v)", seed, r.maxPerSec, r.verdicts)
		}
		if len(r.verdicts) > 30 {
			t.Errorf("seed %d: %d verdicts in 10 minutes", seed, len(r.verdicts))
		}
	}
	t.Logf("loaded: %d false verdicts in 20 runs of 10 minutes (about %.1f per hour)", total, float64(total)/20*6)
}

func TestLivenessSimulationCut(t *testing.T) {
	var worst, best time.Duration = 0, time.Hour
	for seed := range uint64(50) {
		cut := 5*time.Second + time.Duration(seed)*7*time.Millisecond
		r := simulate(seed, time.Minute, 0, 0, 0, cut)
		if r.cutVerdict < 0 {
			t.Fatalf("seed %d: cut never detected", seed)
		}
		worst, best = max(worst, r.cutVerdict), min(best, r.cutVerdict)
	}
	t.Logf("cut on a healthy link declared dead after %v..%v", best, worst)
	if best < 200*time.Millisecond || worst > 300*time.Millisecond {
		t.Fatalf("cut detected after %v..%v, want within 200..300ms", best, worst)
	}
	// On a loaded link the threshold is higher but bounded.
	worst = 0
	for seed := range uint64(50) {
		r := simulate(seed, time.Minute, 0.005, 0.005, 600*time.Millisecond, 50*time.Second)
		if r.cutVerdict >= 0 {
			worst = max(worst, r.cutVerdict)
		}
	}
	t.Logf("cut on a loaded link declared dead after at most %v", worst)
	if worst > testLive.deadMax+2*testLive.tick+600*time.Millisecond {
		t.Fatalf("cut on a loaded link detected after %v", worst)
	}
}

func TestDialPlan(t *testing.T) {
	p := dialParams{interval: ms(100), max: ms(5000), backoffAfter: time.Minute, maxInFlight: 3}
	key := PublicKey{1}
	notSelf := func(string) bool { return false }
	up := map[PublicKey]bool{}
	linked := func(k PublicKey) bool { return up[k] }
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	d := newDialPlan(p)
	d.set([]string{"a:1", "b:1", "a:1"}, notSelf)
	if got := d.due(at(0), linked); len(got) != 2 || got[0] != "a:1" || got[1] != "b:1" {
		t.Fatalf("new targets: %v", got)
	}
	if got := d.due(at(ms(50)), linked); len(got) != 0 {
		t.Fatalf("before the interval: %v", got)
	}
	// Attempts overlap up to maxInFlight.
	d.due(at(ms(100)), linked)
	d.due(at(ms(200)), linked)
	if got := d.due(at(ms(300)), linked); len(got) != 0 {
		t.Fatalf("above maxInFlight: %v", got)
	}
	d.result("a:1", at(ms(300)), dialOK, key, true)
	up[key] = true
	for range 3 {
		d.result("b:1", at(ms(300)), dialFailed, PublicKey{}, false)
	}
	d.result("a:1", at(ms(300)), dialFailed, PublicKey{}, false)
	d.result("a:1", at(ms(300)), dialFailed, PublicKey{}, false)
	if got := d.due(at(ms(1000)), linked); len(got) != 1 || got[0] != "b:1" {
		t.Fatalf("linked target dialled: %v", got)
	}
	// The link goes down: a:1 is due at once.
	up[key] = false
	d.linkDown(key)
	if got := d.due(at(ms(1001)), linked); len(got) != 1 || got[0] != "a:1" {
		t.Fatalf("after link down: %v", got)
	}

	// Failing for longer than backoffAfter doubles the interval up to max.
	d = newDialPlan(p)
	d.set([]string{"c:1"}, notSelf)
	now := time.Duration(0)
	var intervals []time.Duration
	last := time.Duration(-1)
	for now < 3*time.Minute {
		if got := d.due(at(now), linked); len(got) == 1 {
			if last >= 0 {
				intervals = append(intervals, now-last)
			}
			last = now
			d.result("c:1", at(now+ms(200)), dialFailed, PublicKey{}, false)
		}
		now += ms(10)
	}
	first, final := intervals[0], intervals[len(intervals)-1]
	if first != ms(100) || final != ms(5000) {
		t.Fatalf("intervals go from %v to %v, want 100ms then 5s", first, final)
	}
	d.result("c:1", at(now), dialOK, key, true)
	if tgt := d.targets["c:1"]; tgt.backoff != 0 || !tgt.failingSince.IsZero() {
		t.Fatalf("success did not reset the backoff: %+v", tgt)
	}

	// A refusal backs off at once.
	d = newDialPlan(p)
	d.set([]string{"r:1"}, notSelf)
	d.due(at(0), linked)
	d.result("r:1", at(ms(10)), dialRefused, key, true)
	d.due(at(ms(200)), linked)
	d.result("r:1", at(ms(210)), dialRefused, key, true)
	if got := d.due(at(ms(300)), linked); len(got) != 0 {
		t.Fatalf("refusing target redialled after 100ms: %v", got)
	}
	if got := d.due(at(ms(410)), linked); len(got) != 1 {
		t.Fatalf("refusing target not redialled after its backoff: %v", got)
	}

	// Self targets are never dialled; learned keys suppress dials.
	d = newDialPlan(p)
	d.set([]string{"me:1", "peer:1"}, func(a string) bool { return a == "me:1" })
	d.learn("peer:1", key)
	up[key] = true
	if got := d.due(at(0), linked); len(got) != 0 {
		t.Fatalf("dialled %v", got)
	}
	d.set([]string{"new:1"}, notSelf)
	d.result("peer:1", at(0), dialOK, key, true) // removed meanwhile: ignored
	if len(d.targets) != 1 {
		t.Fatalf("targets %v", d.targets)
	}
	d.due(at(0), linked)
	d.result("new:1", at(ms(1)), dialSelf, key, true)
	if got := d.due(at(time.Hour), linked); len(got) != 0 {
		t.Fatalf("self dialled again: %v", got)
	}
}

// TestLivenessMovingCuts: cuts that move around the network (each link cut
// for seconds, healed, then cut again a few seconds later) are real cuts,
// not flapping: every one must be detected after DeadAfter, however many
// came before. Links that die within flapWindow of coming up still raise
// the penalty.
func TestLivenessMovingCuts(t *testing.T) {
	for _, tc := range []struct {
		name       string
		lived      time.Duration // how long each link carried traffic before its cut
		down       time.Duration // how long each cut lasted (redials failing)
		cuts       int
		wantLastMS [2]int // range of the threshold of the link that meets the last cut
	}{
		{"moving cut: up 3s, down 10s", 3 * time.Second, 10 * time.Second, 4, [2]int{250, 250}},
		{"cut soon after start: up 2.5s, down 8s", 2500 * time.Millisecond, 8 * time.Second, 3, [2]int{250, 250}},
		{"long-lived links", 30 * time.Second, 8 * time.Second, 3, [2]int{250, 250}},
		// Flapping: up 0.5s, down 0.6s. Each verdict doubles the penalty
		// (dead within flapWindow, and back within quickReturn), fading
		// little in between: the threshold reaches DeadAfterMax.
		{"flapping link", 500 * time.Millisecond, 600 * time.Millisecond, 4, [2]int{1500, 2000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := peerHistory{}
			now := t0
			var l *liveness
			for i := range tc.cuts {
				l = newLiveness(testLive, h, now)
				// Traffic every ping interval while the link lives.
				end := now.Add(tc.lived)
				for ; now.Before(end); now = now.Add(testLive.tick) {
					l.received(now)
					if r := l.tick(now); r.dead {
						t.Fatalf("cut %d: dead verdict on a healthy link at %v", i, now.Sub(t0))
					}
				}
				if i == tc.cuts-1 {
					break
				}
				// The cut: silence until the verdict.
				cutAt := now
				for ; ; now = now.Add(testLive.tick) {
					if r := l.tick(now); r.dead {
						break
					}
					if now.Sub(cutAt) > testLive.deadMax+time.Second {
						t.Fatalf("cut %d: no verdict", i)
					}
				}
				h = l.down(now, endDead)
				now = now.Add(tc.down)
			}
			if got := l.threshold(); got < ms(tc.wantLastMS[0]) || got > ms(tc.wantLastMS[1]) {
				t.Fatalf("threshold at the last cut %v, want %v..%v (penalty %.2f)", got, ms(tc.wantLastMS[0]), ms(tc.wantLastMS[1]), l.hist.penalty)
			}
		})
	}
}

// TestLivenessQuickReturnAfterLoss: a link that ends under us (the peer's
// verdict reaches us as a reset) and comes back at once raises the penalty
// as our own wrong verdict would; a clean close, or a return after
// quickReturn, does not.
func TestLivenessQuickReturnAfterLoss(t *testing.T) {
	for _, tc := range []struct {
		name        string
		end         linkEnd
		back        time.Duration // from the end to the next link
		wantPenalty float64
	}{
		{"lost, back at once", endLost, 40 * time.Millisecond, 2},
		{"our verdict, back at once", endDead, 40 * time.Millisecond, 2},
		{"lost, back after the cut", endLost, quickReturn + time.Second, 1},
		{"clean close, back at once", endOther, 40 * time.Millisecond, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			l := newLiveness(testLive, peerHistory{}, now)
			// A long-lived link: its end raises nothing by itself.
			for end := now.Add(time.Minute); now.Before(end); now = now.Add(testLive.tick) {
				l.received(now)
				l.tick(now)
			}
			h := l.down(now, tc.end)
			next := newLiveness(testLive, h, now.Add(tc.back))
			if p := next.hist.penalty; p < tc.wantPenalty*0.95 || p > tc.wantPenalty*1.05 {
				t.Fatalf("penalty %.2f, want about %v", p, tc.wantPenalty)
			}
		})
	}
}
