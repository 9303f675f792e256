package meshtransport

import (
	"math/rand/v2"
	"testing"
	"time"
)

// pathStep is one event for the path state machine at a logical time (ms).
type pathStep struct {
	at    int // ms since the start
	event string
	seq   uint64 // for reply
	want  Path   // checked after the event
}

func runPath(t *testing.T, name string, steps []pathStep) {
	t.Helper()
	p := newPathParams(100*time.Millisecond, 4, 50*time.Millisecond)
	t0 := time.Unix(1000, 0)
	s := newPathState(p, t0)
	for i, st := range steps {
		now := t0.Add(time.Duration(st.at) * time.Millisecond)
		switch st.event {
		case "up":
			s.linkUp(now)
		case "down":
			s.linkDown(now)
		case "route":
			s.setRoute(true, now)
		case "noroute":
			s.setRoute(false, now)
		case "tick":
			s.tick(now)
		case "reply":
			s.probeReply(st.seq, now)
		case "replylast":
			s.probeReply(s.seq, now)
		default:
			t.Fatalf("%s: unknown event %q", name, st.event)
		}
		if s.path != st.want {
			t.Fatalf("%s: step %d (%s at %dms): path %v, want %v", name, i, st.event, st.at, s.path, st.want)
		}
	}
}

// ticks returns tick events every 50ms over (from, to], all expecting want.
func ticks(from, to int, want Path) []pathStep {
	var out []pathStep
	for at := from + 50; at <= to; at += 50 {
		out = append(out, pathStep{at: at, event: "tick", want: want})
	}
	return out
}

func join(parts ...[]pathStep) []pathStep {
	var out []pathStep
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestPathStateTable(t *testing.T) {
	cases := map[string][]pathStep{
		"a new peer is dead until a probe is answered": join(
			[]pathStep{{at: 0, event: "route", want: PathDead}},
			ticks(0, 200, PathDead),
			[]pathStep{{at: 210, event: "replylast", want: PathRelayed}},
		),
		"a link makes it direct whatever the probes say": join(
			[]pathStep{{at: 0, event: "up", want: PathDirect}},
			ticks(0, 2000, PathDirect),
		),
		"link down with a route: relayed at once, kept while probes are answered": join(
			[]pathStep{{at: 0, event: "up", want: PathDirect}, {at: 10, event: "route", want: PathDirect},
				{at: 20, event: "down", want: PathRelayed}},
			ticks(20, 120, PathRelayed),
			[]pathStep{{at: 125, event: "replylast", want: PathRelayed}},
			ticks(120, 220, PathRelayed),
			[]pathStep{{at: 225, event: "replylast", want: PathRelayed}},
		),
		"link down, probes unanswered: dead after four misses": join(
			[]pathStep{{at: 0, event: "up", want: PathDirect}, {at: 0, event: "route", want: PathDirect},
				{at: 0, event: "down", want: PathRelayed}},
			// Probes at 50, 150, 250, 350, 450; misses counted at 150..450.
			ticks(0, 400, PathRelayed),
			ticks(400, 450, PathDead),
			// One answer brings it back.
			[]pathStep{{at: 460, event: "replylast", want: PathRelayed}},
		),
		"link down and no route: dead after the route grace": join(
			[]pathStep{{at: 0, event: "up", want: PathDirect}, {at: 0, event: "down", want: PathRelayed}},
			ticks(0, 300, PathRelayed),
			ticks(300, 350, PathDead),
		),
		"a route appearing within the grace keeps it relayed": join(
			[]pathStep{{at: 0, event: "up", want: PathDirect}, {at: 0, event: "down", want: PathRelayed}},
			ticks(0, 200, PathRelayed),
			[]pathStep{{at: 210, event: "route", want: PathRelayed}},
			ticks(200, 300, PathRelayed),
			[]pathStep{{at: 310, event: "replylast", want: PathRelayed}},
			ticks(300, 500, PathRelayed),
		),
		"a late reply to an old probe counts": join(
			[]pathStep{{at: 0, event: "route", want: PathDead}},
			ticks(0, 300, PathDead),
			[]pathStep{{at: 310, event: "reply", seq: 1, want: PathRelayed}},
		),
		"replies to unknown probes are ignored": {
			{at: 0, event: "route", want: PathDead},
			{at: 50, event: "tick", want: PathDead},
			{at: 60, event: "reply", seq: 99, want: PathDead},
			{at: 70, event: "reply", seq: 0, want: PathDead},
		},
		"the link coming back wins over a dead verdict": join(
			[]pathStep{{at: 0, event: "up", want: PathDirect}, {at: 0, event: "down", want: PathRelayed}},
			ticks(0, 300, PathRelayed),
			ticks(300, 350, PathDead),
			[]pathStep{{at: 400, event: "up", want: PathDirect}},
		),
	}
	for name, steps := range cases {
		runPath(t, name, steps)
	}
}

// TestPathStateStarvedTicksGiveNoVerdict: when our own process is not
// scheduled, a late tick must not count a miss (the reply may be waiting
// in our socket), so a loaded machine does not flap.
func TestPathStateStarvedTicksGiveNoVerdict(t *testing.T) {
	p := newPathParams(100*time.Millisecond, 4, 50*time.Millisecond)
	t0 := time.Unix(1000, 0)
	s := newPathState(p, t0)
	s.linkUp(t0)
	s.setRoute(true, t0)
	s.linkDown(t0)
	now := t0
	// Every tick arrives a whole second late, for a minute.
	for range 60 {
		now = now.Add(time.Second)
		s.tick(now)
		if s.path != PathRelayed {
			t.Fatalf("late ticks gave a verdict: %v after %v", s.path, now.Sub(t0))
		}
	}
}

// TestPathStateSeededFlapping drives the state with random probe loss and
// checks the invariants: never dead while replies keep coming within the
// failure budget, dead within failures+1 probe intervals of the last
// reply, and at most one switch per answered/unanswered transition.
func TestPathStateSeededFlapping(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 0))
		p := newPathParams(100*time.Millisecond, 4, 50*time.Millisecond)
		t0 := time.Unix(1000, 0)
		s := newPathState(p, t0)
		s.setRoute(true, t0)
		var lastReply time.Time
		loss := rng.Float64()
		for i := 1; i <= 2000; i++ {
			now := t0.Add(time.Duration(i) * 50 * time.Millisecond)
			r := s.tick(now)
			if r.probe && rng.Float64() >= loss {
				at := now.Add(time.Duration(rng.IntN(20)) * time.Millisecond)
				s.probeReply(r.seq, at)
				lastReply = at
			}
			switch {
			case s.path == PathDead && !lastReply.IsZero() && now.Sub(lastReply) < 300*time.Millisecond:
				t.Fatalf("seed %d: dead %v after a reply", seed, now.Sub(lastReply))
			case s.path == PathRelayed && now.Sub(lastReply) > 700*time.Millisecond:
				t.Fatalf("seed %d: still relayed %v after the last reply", seed, now.Sub(lastReply))
			}
		}
	}
}
