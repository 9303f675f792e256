package meshtransport

import "time"

// Path is how frames reach a peer.
type Path uint8

const (
	// PathDead: no link, and the mesh has no route to the peer or our
	// sealed probes over it go unanswered.
	PathDead Path = iota
	// PathRelayed: no link; the mesh routes our sealed frames through other
	// peers, and the peer answers our probes.
	PathRelayed
	// PathDirect: a link to the peer is up.
	PathDirect
)

func (p Path) String() string {
	switch p {
	case PathDirect:
		return "direct"
	case PathRelayed:
		return "relayed"
	}
	return "dead"
}

// probeWindow is how many recent probes a reply may answer.
const probeWindow = 16

// starvedTicks: a tick this many tick intervals late means our own process
// was not scheduled; it gives no verdict (our reader may not have run
// either).
const starvedTicks = 3

// pathParams are the settings of every peer's path state.
type pathParams struct {
	probeInterval time.Duration
	failures      int           // consecutive unanswered probes that make a relayed peer dead
	routeGrace    time.Duration // how long a peer without link stays relayed while the mesh has no route yet
	tick          time.Duration // the monitor's tick interval
}

func newPathParams(probeInterval time.Duration, failures int, tick time.Duration) pathParams {
	return pathParams{
		probeInterval: probeInterval,
		failures:      failures,
		routeGrace:    max(3*probeInterval, 300*time.Millisecond),
		tick:          tick,
	}
}

// pathState decides one peer's path. Links are peerlink's business (it
// owns their liveness, with its own hysteresis): while a link is up the
// path is direct. Without a link the path is relayed while the mesh has a
// route and the peer answers sealed probes over it, and dead after
// `failures` consecutive unanswered probes, or after routeGrace with no
// route. A link that just died leaves the peer relayed at once (the mesh
// reroutes within milliseconds once the link's connection is closed), and
// one answered probe makes a dead peer relayed again. Ticks that come late
// (a starved process) give no verdict.
//
// It is pure bookkeeping: no I/O, no clock of its own. The monitor drives
// it with time.Now(); tests drive it with logical time.
type pathState struct {
	p pathParams

	link         bool
	route        bool
	noRouteSince time.Time
	path         Path
	since        time.Time
	switches     uint64

	seq      uint64
	sentAt   [probeWindow]time.Time // by seq % probeWindow
	lastSent time.Time
	answered bool // the latest probe was answered
	missed   int
	rtt      time.Duration // round trip of the newest answered probe
	lastTick time.Time
}

func newPathState(p pathParams, now time.Time) *pathState {
	return &pathState{p: p, path: PathDead, since: now, noRouteSince: now, lastTick: now}
}

func (s *pathState) set(p Path, now time.Time) bool {
	if s.path == p {
		return false
	}
	s.path, s.since = p, now
	s.switches++
	return true
}

// linkUp: a link to the peer is up.
func (s *pathState) linkUp(now time.Time) bool {
	s.link = true
	s.missed = 0
	return s.set(PathDirect, now)
}

// linkDown: the peer's link went down. The peer counts as relayed until
// the probes or the absence of a route say otherwise.
func (s *pathState) linkDown(now time.Time) bool {
	s.link = false
	s.missed = 0
	s.answered = true // the first probe round starts afresh
	s.lastSent = time.Time{}
	if !s.route {
		s.noRouteSince = now
	}
	return s.set(PathRelayed, now)
}

// setRoute records whether the mesh has a route to the peer that does not
// use the peer's (dead) link.
func (s *pathState) setRoute(ok bool, now time.Time) {
	if ok == s.route {
		return
	}
	s.route = ok
	if !ok {
		s.noRouteSince = now
	}
}

// tickResult is what the monitor must do for the peer.
type tickResult struct {
	probe   bool   // send probe probeSeq over the mesh
	seq     uint64 // valid when probe
	changed bool   // the path changed
}

// tick advances the state to now.
func (s *pathState) tick(now time.Time) tickResult {
	var r tickResult
	late := s.p.tick > 0 && now.Sub(s.lastTick) > starvedTicks*s.p.tick
	s.lastTick = now
	if s.link {
		return r
	}
	if s.route && (s.lastSent.IsZero() || now.Sub(s.lastSent) >= s.p.probeInterval) {
		if !s.lastSent.IsZero() && !s.answered && !late {
			s.missed++
		}
		s.seq++
		s.sentAt[s.seq%probeWindow] = now
		s.lastSent, s.answered = now, false
		r.probe, r.seq = true, s.seq
	}
	if late {
		return r
	}
	switch {
	case !s.route && now.Sub(s.noRouteSince) > s.p.routeGrace:
		r.changed = s.set(PathDead, now)
	case s.route && s.missed >= s.p.failures:
		r.changed = s.set(PathDead, now)
	}
	return r
}

// probeReply records the answer to probe seq; answers to unknown or too old
// probes are ignored. It reports whether the path changed.
func (s *pathState) probeReply(seq uint64, now time.Time) bool {
	if seq == 0 || seq > s.seq || s.seq-seq >= probeWindow || s.sentAt[seq%probeWindow].IsZero() {
		return false
	}
	if seq == s.seq {
		s.answered = true
	}
	s.missed = 0
	s.rtt = now.Sub(s.sentAt[seq%probeWindow])
	if s.link {
		return false
	}
	s.route = true // an answer proves a route, whatever the router said
	return s.set(PathRelayed, now)
}
