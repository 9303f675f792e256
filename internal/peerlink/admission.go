package peerlink

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// source identifies where an inbound connection comes from for the
// pre-authentication limits: an IPv4 address, or the /64 prefix of an IPv6
// address (one host usually owns a whole /64). Non-IP addresses (tests'
// in-memory pipes) share the zero source.
type source netip.Prefix

func sourceOf(addr net.Addr) source {
	var ap netip.AddrPort
	switch a := addr.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		p, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return source{}
		}
		ap = p
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return source{}
	}
	return source(p)
}

func (s source) String() string {
	p := netip.Prefix(s)
	if !p.IsValid() {
		return "unknown"
	}
	if p.Addr().Is4() {
		return p.Addr().String()
	}
	return p.String()
}

// rejectReason says why admission refused a connection.
type rejectReason int

const (
	admitted     rejectReason = iota
	rejectRate                // the source's token bucket is empty
	rejectSource              // the source has too many handshakes in flight
	rejectGlobal              // too many handshakes in flight overall, or too many sources
)

// maxSources bounds the per-source table. Entries disappear once their
// bucket is full again and no handshake is in flight.
const maxSources = 4096

// admission enforces the limits on inbound connections before they are
// authenticated: a token bucket and a concurrency cap per source, and a
// global concurrency cap. It is safe for concurrent use.
type admission struct {
	perSource int
	rate      float64 // tokens per second
	burst     float64
	global    int

	mu       sync.Mutex
	inFlight int
	sources  map[source]*sourceState
}

type sourceState struct {
	inFlight int
	tokens   float64
	at       time.Time // when tokens was computed
}

func newAdmission(perSource int, rate float64, burst, global int) *admission {
	return &admission{perSource: perSource, rate: rate, burst: float64(burst), global: global,
		sources: make(map[source]*sourceState)}
}

// refill brings s's tokens up to now.
func (a *admission) refill(s *sourceState, now time.Time) {
	if now.After(s.at) {
		s.tokens = min(a.burst, s.tokens+a.rate*now.Sub(s.at).Seconds())
		s.at = now
	}
}

// acquire decides on a new connection from src. Every attempt costs a token,
// so a source that floods stays throttled while it floods. On admission the
// caller must call release exactly once when the handshake ends.
func (a *admission) acquire(src source, now time.Time) rejectReason {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sources[src]
	if s == nil {
		if len(a.sources) >= maxSources {
			a.pruneLocked(now)
			if len(a.sources) >= maxSources {
				return rejectGlobal
			}
		}
		s = &sourceState{tokens: a.burst, at: now}
		a.sources[src] = s
	}
	a.refill(s, now)
	if s.tokens < 1 {
		return rejectRate
	}
	s.tokens--
	if s.inFlight >= a.perSource {
		return rejectSource
	}
	if a.inFlight >= a.global {
		return rejectGlobal
	}
	s.inFlight++
	a.inFlight++
	return admitted
}

// release ends an admitted handshake from src.
func (a *admission) release(src source) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inFlight--
	if s := a.sources[src]; s != nil && s.inFlight > 0 {
		s.inFlight--
	}
}

// handshakes returns the number of admitted handshakes in flight.
func (a *admission) handshakes() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inFlight
}

// prune forgets sources that are back to their initial state.
func (a *admission) prune(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pruneLocked(now)
}

func (a *admission) pruneLocked(now time.Time) {
	for k, s := range a.sources {
		a.refill(s, now)
		if s.inFlight == 0 && s.tokens >= a.burst {
			delete(a.sources, k)
		}
	}
}
