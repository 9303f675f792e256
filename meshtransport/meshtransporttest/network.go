// Package meshtransporttest provides an in-memory network for
// meshtransport: peer links that can be cut (silently, both ways or one
// way), reset, delayed, and a router that routes over the live links and
// gossips. Transports built on it run the transport's own logic without
// sockets, under -race and inside testing/synctest bubbles (every wait is a
// timer or a channel operation, so fake time advances while nodes wait).
//
// Build a Network, pass Network.Fabric() as meshtransport.Config.Fabric of
// every transport (each with a distinct ListenAddr, any string of the form
// HOST:PORT), and break links between transports with Cut, CutOneWay,
// Reset, SetDelay and SetDrop; Heal and HealAll undo faults.
//
// Links behave like peerlink's: at most one per pair of nodes, datagrams
// in order and at most once, undelivered ones handed back in OnLinkDown. A
// silent cut (either direction) takes the link down after DeadAfter, as
// peerlink's liveness would; while cut, a pair cannot link again. The
// router's routes follow the live links at once (mesh learns topology
// within milliseconds once a connection is closed); its unicasts cross one
// link per hop with that link's delay and are lost on a cut or dropped
// link, as mesh loses bytes in flight; relays re-route at every hop.
package meshtransporttest

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/meshkv/meshkv/internal/peerlink"
	"github.com/meshkv/meshkv/meshtransport"
)

// Defaults of a Network's timing.
const (
	DefaultDeadAfter      = 250 * time.Millisecond
	DefaultRedialInterval = 100 * time.Millisecond
	DefaultHandshake      = 2 * time.Millisecond
)

// Peer is anything that names a mesh peer (a *meshtransport.Transport).
type Peer interface {
	PeerName() meshtransport.PeerName
}

// Network is an in-memory network of transports. The zero value is not
// usable; call New.
type Network struct {
	// DeadAfter is how long a silent cut takes to bring a link down.
	DeadAfter time.Duration
	// RedialInterval is how often a node without a link to a target tries
	// again.
	RedialInterval time.Duration
	// Handshake is how long establishing a link takes (plus the delays).
	Handshake time.Duration

	mu     sync.Mutex
	rng    *rand.Rand
	byAddr map[string]*node
	byName map[meshtransport.PeerName]*node
	links  map[pairKey]*link
	faults map[dirKey]*fault
	seq    uint64
}

type pairKey [2]meshtransport.PeerName // ordered: [0] < [1]
type dirKey [2]meshtransport.PeerName  // from, to

func pairOf(a, b meshtransport.PeerName) pairKey {
	if a > b {
		a, b = b, a
	}
	return pairKey{a, b}
}

// fault is what is wrong with one direction between two nodes.
type fault struct {
	cut   bool
	gen   uint64 // bumped by every cut, so a dead timer ends only its own cut
	delay time.Duration
	drop  float64 // probability that a router hop loses a unicast
}

// New returns an empty network; seed drives every random choice (drops).
func New(seed uint64) *Network {
	return &Network{
		DeadAfter:      DefaultDeadAfter,
		RedialInterval: DefaultRedialInterval,
		Handshake:      DefaultHandshake,
		rng:            rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		byAddr:         make(map[string]*node),
		byName:         make(map[meshtransport.PeerName]*node),
		links:          make(map[pairKey]*link),
		faults:         make(map[dirKey]*fault),
	}
}

// Fabric returns the meshtransport.Fabric that builds nodes on this
// network.
func (n *Network) Fabric() meshtransport.Fabric { return fabric{n} }

type fabric struct{ n *Network }

func (f fabric) NewLinks(cfg peerlink.Config) (meshtransport.Links, error) {
	return f.n.newNode(cfg)
}

func (f fabric) NewRouter(cfg meshtransport.RouterConfig) (meshtransport.Router, error) {
	return f.n.newRouter(cfg)
}

func (n *Network) faultLocked(from, to meshtransport.PeerName) *fault {
	f := n.faults[dirKey{from, to}]
	if f == nil {
		f = &fault{}
		n.faults[dirKey{from, to}] = f
	}
	return f
}

// Cut silently drops everything between a and b, both ways: the link
// between them goes down after DeadAfter and cannot come back until Heal.
func (n *Network) Cut(a, b Peer) {
	n.setCut(a.PeerName(), b.PeerName(), true)
	n.setCut(b.PeerName(), a.PeerName(), true)
}

// CutOneWay silently drops what from sends to to; the other direction
// still works (the link goes down after DeadAfter all the same).
func (n *Network) CutOneWay(from, to Peer) { n.setCut(from.PeerName(), to.PeerName(), true) }

// Heal undoes Cut and CutOneWay between a and b (both ways); delays and
// drops stay.
func (n *Network) Heal(a, b Peer) {
	n.setCut(a.PeerName(), b.PeerName(), false)
	n.setCut(b.PeerName(), a.PeerName(), false)
}

// HealAll removes every fault.
func (n *Network) HealAll() {
	n.mu.Lock()
	var healed []dirKey
	for k, f := range n.faults {
		if f.cut {
			healed = append(healed, k)
		}
	}
	clear(n.faults)
	n.mu.Unlock()
	for _, k := range healed {
		n.cutChanged(k[0], k[1], false, 0)
	}
}

// Isolate cuts a from every node currently on the network.
func (n *Network) Isolate(a Peer) {
	n.mu.Lock()
	var others []meshtransport.PeerName
	for name := range n.byName {
		if name != a.PeerName() {
			others = append(others, name)
		}
	}
	n.mu.Unlock()
	for _, o := range others {
		n.setCut(a.PeerName(), o, true)
		n.setCut(o, a.PeerName(), true)
	}
}

// SetDelay delays everything between a and b by d, each way.
func (n *Network) SetDelay(a, b Peer, d time.Duration) {
	n.mu.Lock()
	n.faultLocked(a.PeerName(), b.PeerName()).delay = d
	n.faultLocked(b.PeerName(), a.PeerName()).delay = d
	n.mu.Unlock()
}

// SetDrop makes every router hop between a and b (either way) lose a
// unicast with probability p. Links themselves never lose datagrams.
func (n *Network) SetDrop(a, b Peer, p float64) {
	n.mu.Lock()
	n.faultLocked(a.PeerName(), b.PeerName()).drop = p
	n.faultLocked(b.PeerName(), a.PeerName()).drop = p
	n.mu.Unlock()
}

// Reset closes the link between a and b at once, as a TCP reset would; the
// nodes may link again at their next attempt.
func (n *Network) Reset(a, b Peer) {
	n.mu.Lock()
	l := n.links[pairOf(a.PeerName(), b.PeerName())]
	n.mu.Unlock()
	if l != nil {
		l.down(peerlink.ErrConnLost)
	}
}

// Linked reports whether a link between a and b is up.
func (n *Network) Linked(a, b Peer) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.links[pairOf(a.PeerName(), b.PeerName())]
	return l != nil && !l.isDown()
}

func (n *Network) setCut(from, to meshtransport.PeerName, cut bool) {
	n.mu.Lock()
	f := n.faultLocked(from, to)
	was := f.cut
	f.cut = cut
	if cut && !was {
		f.gen++
	}
	gen := f.gen
	n.mu.Unlock()
	if was != cut {
		n.cutChanged(from, to, cut, gen)
	}
}

// cutChanged starts the dead timer of a link whose direction was cut, or
// releases what a healed direction held back.
func (n *Network) cutChanged(from, to meshtransport.PeerName, cut bool, gen uint64) {
	n.mu.Lock()
	l := n.links[pairOf(from, to)]
	dead := n.DeadAfter
	n.mu.Unlock()
	if l == nil {
		return
	}
	d := l.dir(from)
	if d == nil {
		return
	}
	if cut {
		d.setHeld(true)
		time.AfterFunc(dead, func() {
			if n.cutGen(from, to) == gen {
				l.down(peerlink.ErrDead)
			}
		})
		return
	}
	d.setHeld(false)
}

func (n *Network) isCut(from, to meshtransport.PeerName) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	f := n.faults[dirKey{from, to}]
	return f != nil && f.cut
}

// cutGen is the generation of the current cut from -> to, 0 if none.
func (n *Network) cutGen(from, to meshtransport.PeerName) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if f := n.faults[dirKey{from, to}]; f != nil && f.cut {
		return f.gen
	}
	return 0
}

func (n *Network) delay(from, to meshtransport.PeerName) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	if f := n.faults[dirKey{from, to}]; f != nil {
		return f.delay
	}
	return 0
}

// lose decides whether a router hop from -> to loses a unicast.
func (n *Network) lose(from, to meshtransport.PeerName) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	f := n.faults[dirKey{from, to}]
	if f == nil {
		return false
	}
	if f.cut {
		return true
	}
	return f.drop > 0 && n.rng.Float64() < f.drop
}

// neighbours lists the nodes linked to name, in name order.
func (n *Network) neighbours(name meshtransport.PeerName) []meshtransport.PeerName {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.neighboursLocked(name)
}

func (n *Network) neighboursLocked(name meshtransport.PeerName) []meshtransport.PeerName {
	var out []meshtransport.PeerName
	for k, l := range n.links {
		if l.isDown() {
			continue
		}
		switch name {
		case k[0]:
			out = append(out, k[1])
		case k[1]:
			out = append(out, k[0])
		}
	}
	slices.Sort(out)
	return out
}

// nextHop is the first hop of a shortest path from src to dst over live
// links (ties broken by name), as mesh's routes would give.
func (n *Network) nextHop(src, dst meshtransport.PeerName) (meshtransport.PeerName, bool) {
	if src == dst {
		return 0, false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	first := map[meshtransport.PeerName]meshtransport.PeerName{src: 0}
	queue := []meshtransport.PeerName{src}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, nb := range n.neighboursLocked(cur) {
			if _, seen := first[nb]; seen {
				continue
			}
			if cur == src {
				first[nb] = nb
			} else {
				first[nb] = first[cur]
			}
			if nb == dst {
				return first[nb], true
			}
			queue = append(queue, nb)
		}
	}
	return 0, false
}

// routesChanged tells every router that routes may have changed.
func (n *Network) routesChanged() {
	n.mu.Lock()
	var fs []func()
	for _, nd := range n.byName {
		if nd.router != nil && nd.router.cfg.RoutesChanged != nil {
			fs = append(fs, nd.router.cfg.RoutesChanged)
		}
	}
	n.mu.Unlock()
	for _, f := range fs {
		f()
	}
}
