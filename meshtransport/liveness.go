package meshtransport

import (
	"slices"
	"time"

	"github.com/weaveworks/mesh"
)

// linkState is what our probes say about a peer's direct (mesh-routed) path.
type linkState uint8

const (
	stateUnknown linkState = iota // no reply yet and not enough misses to call it dead
	stateAlive                    // the latest probes are answered
	stateDead                     // ProbeFailures consecutive probes went unanswered
)

func (s linkState) String() string {
	switch s {
	case stateAlive:
		return "alive"
	case stateDead:
		return "dead"
	}
	return "unknown"
}

// probeWindow is how many recent probes a reply may answer; older replies
// are ignored.
const probeWindow = 16

type probeSent struct {
	seq uint64
	at  time.Time
}

// probeState tracks the probes to one peer. It is pure bookkeeping (no I/O,
// no clock of its own), guarded by its link's mutex.
type probeState struct {
	failures  int // consecutive misses that make a peer dead
	last      uint64
	sent      [probeWindow]probeSent
	answered  bool // the probe numbered last has been answered
	missed    int
	state     linkState
	rtt       time.Duration
	bestReply uint64                     // highest probe number answered
	peerLive  map[mesh.PeerName]struct{} // the peer's live set from its newest reply
}

func newProbeState(failures int) probeState {
	return probeState{failures: failures}
}

// tick closes the previous probe round and opens a new one: it counts the
// previous probe as missed if it went unanswered, and returns the number of
// the next probe to send and whether the state changed. A peer that never
// answered gets twice the usual misses, because right after it appears
// mesh may still be building the route to it.
func (p *probeState) tick(now time.Time) (seq uint64, changed bool) {
	if p.last > 0 && !p.answered {
		p.missed++
		limit := p.failures
		if p.bestReply == 0 {
			limit *= 2
		}
		if p.missed >= limit && p.state != stateDead {
			p.state = stateDead
			changed = true
		}
	}
	p.last++
	p.sent[p.last%probeWindow] = probeSent{seq: p.last, at: now}
	p.answered = false
	return p.last, changed
}

// reply records an answer to probe seq carrying the peer's live set, and
// reports whether the state changed. Answers to unknown or too old probes
// are ignored.
func (p *probeState) reply(seq uint64, now time.Time, live []mesh.PeerName) (changed bool) {
	if seq == 0 || seq > p.last || p.sent[seq%probeWindow].seq != seq {
		return false
	}
	if seq == p.last {
		p.answered = true
	}
	p.missed = 0
	if seq > p.bestReply {
		p.bestReply = seq
		p.rtt = now.Sub(p.sent[seq%probeWindow].at)
		set := make(map[mesh.PeerName]struct{}, len(live))
		for _, n := range live {
			set[n] = struct{}{}
		}
		p.peerLive = set
	}
	if p.state != stateAlive {
		p.state = stateAlive
		return true
	}
	return false
}

// sees reports whether the peer's newest reply listed dst as live.
func (p *probeState) sees(dst mesh.PeerName) bool {
	_, ok := p.peerLive[dst]
	return ok
}

// relayCandidate is a peer that might carry a detour to a dead destination.
type relayCandidate struct {
	name    mesh.PeerName
	alive   bool          // our probes to it are answered
	rtt     time.Duration // our round trip to it
	seesDst bool          // its newest probe reply lists the destination as live
}

// chooseRelay picks the relay for a destination whose direct route is dead:
// the current relay while it stays usable (no flapping), otherwise the usable
// candidate with the lowest round trip, ties broken by name. It returns
// mesh.UnknownPeerName when no candidate is usable.
func chooseRelay(current mesh.PeerName, cands []relayCandidate) mesh.PeerName {
	usable := func(c relayCandidate) bool { return c.alive && c.seesDst }
	if current != mesh.UnknownPeerName {
		if i := slices.IndexFunc(cands, func(c relayCandidate) bool { return c.name == current }); i >= 0 && usable(cands[i]) {
			return current
		}
	}
	best := -1
	for i, c := range cands {
		if !usable(c) {
			continue
		}
		if best < 0 || c.rtt < cands[best].rtt || (c.rtt == cands[best].rtt && c.name < cands[best].name) {
			best = i
		}
	}
	if best < 0 {
		return mesh.UnknownPeerName
	}
	return cands[best].name
}
