package meshtransporttest

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weaveworks/mesh"

	"github.com/meshkv/meshkv/internal/peerlink"
	"github.com/meshkv/meshkv/meshtransport"
)

// errNoRoute is what Unicast returns without a route, as mesh does.
var errNoRoute = errors.New("meshtransporttest: unknown relay destination")

// inboxLen bounds what waits for a router goroutine; beyond it messages are
// lost, as mesh loses them when a connection's buffers overflow.
const inboxLen = 4096

// memRouter is a node's router: unicasts hop from router to router over
// live links (re-routed at every hop), broadcasts reach every node the
// sender is connected to, and periodic gossip goes to the neighbours, whose
// news spreads on to theirs.
type memRouter struct {
	n     *Network
	cfg   meshtransport.RouterConfig
	inbox chan routed
	stopc chan struct{}
	wg    sync.WaitGroup

	relayed, relayedBytes, lost atomic.Uint64
	closeOnce                   sync.Once
	started                     atomic.Bool
}

type routedKind uint8

const (
	routedUnicast routedKind = iota
	routedBroadcast
	routedGossip
)

type routed struct {
	kind     routedKind
	src, dst meshtransport.PeerName // dst: unicasts only
	from     meshtransport.PeerName // the previous hop
	msg      []byte
}

var _ meshtransport.Router = (*memRouter)(nil)

func (n *Network) newRouter(cfg meshtransport.RouterConfig) (*memRouter, error) {
	r := &memRouter{n: n, cfg: cfg, inbox: make(chan routed, inboxLen), stopc: make(chan struct{})}
	n.mu.Lock()
	defer n.mu.Unlock()
	nd := n.byName[cfg.Name]
	if nd == nil {
		return nil, errors.New("meshtransporttest: router for a node without links")
	}
	nd.router = r
	return r, nil
}

func (r *memRouter) Start() error {
	if r.started.Swap(true) {
		return nil
	}
	r.wg.Go(r.run)
	r.wg.Go(r.gossipLoop)
	return nil
}

func (r *memRouter) Close() error {
	r.closeOnce.Do(func() { close(r.stopc) })
	r.wg.Wait()
	return nil
}

func (r *memRouter) self() meshtransport.PeerName { return r.cfg.Name }

func (r *memRouter) Unicast(dst meshtransport.PeerName, msg []byte) error {
	hop, ok := r.n.nextHop(r.self(), dst)
	if !ok {
		return errNoRoute
	}
	r.n.forward(r.self(), hop, routed{kind: routedUnicast, src: r.self(), dst: dst, msg: msg})
	return nil
}

func (r *memRouter) NextHop(dst meshtransport.PeerName) (meshtransport.PeerName, bool) {
	return r.n.nextHop(r.self(), dst)
}

// Broadcast delivers the data to every node reachable from us now.
func (r *memRouter) Broadcast(d mesh.GossipData) {
	msgs := d.Encode()
	for _, name := range r.n.reachable(r.self()) {
		for _, m := range msgs {
			r.n.forwardDirect(name, routed{kind: routedBroadcast, src: r.self(), msg: m})
		}
	}
}

// LinkUp sends our whole gossip state down the new link, as mesh does on a
// new connection.
func (r *memRouter) LinkUp(info peerlink.PeerInfo) {
	d := r.cfg.Gossip.Gossip()
	if d == nil {
		return
	}
	peer := meshtransport.PeerNameOf(info.Key)
	for _, m := range d.Encode() {
		r.n.forward(r.self(), peer, routed{kind: routedGossip, src: r.self(), msg: m})
	}
}

// LinkDown implements meshtransport.Router; routes follow the network's
// links by themselves.
func (r *memRouter) LinkDown(peerlink.PublicKey) {}

// Stream implements meshtransport.Router; in-memory links carry no
// streams.
func (r *memRouter) Stream(_ peerlink.PublicKey, s *peerlink.Stream) { _ = s.Close() }

func (r *memRouter) Stats() meshtransport.RouterStats {
	return meshtransport.RouterStats{
		Connections:          len(r.n.neighbours(r.self())),
		RelayedForOthers:     r.relayed.Load(),
		RelayedForOthersByte: r.relayedBytes.Load(),
	}
}

// enqueue hands a message to this router's goroutine; a full inbox loses it.
func (r *memRouter) enqueue(m routed) {
	select {
	case r.inbox <- m:
	default:
		r.lost.Add(1)
	}
}

// run is the router goroutine: it delivers, relays and merges gossip.
func (r *memRouter) run() {
	for {
		select {
		case <-r.stopc:
			return
		case m := <-r.inbox:
			r.handle(m)
		}
	}
}

func (r *memRouter) handle(m routed) {
	switch m.kind {
	case routedUnicast:
		if m.dst == r.self() {
			r.cfg.Deliver(m.msg)
			return
		}
		hop, ok := r.n.nextHop(r.self(), m.dst)
		if !ok {
			r.lost.Add(1)
			return
		}
		r.relayed.Add(1)
		r.relayedBytes.Add(uint64(len(m.msg)))
		r.n.forward(r.self(), hop, m)
	case routedBroadcast:
		_, _ = r.cfg.Gossip.OnGossipBroadcast(m.src, m.msg)
	case routedGossip:
		delta, _ := r.cfg.Gossip.OnGossip(m.msg)
		if delta == nil {
			return
		}
		for _, nb := range r.n.neighbours(r.self()) {
			if nb == m.from {
				continue
			}
			for _, enc := range delta.Encode() {
				r.n.forward(r.self(), nb, routed{kind: routedGossip, src: r.self(), msg: enc})
			}
		}
	}
}

// gossipLoop sends our whole gossip state to every neighbour each
// GossipInterval.
func (r *memRouter) gossipLoop() {
	iv := r.cfg.GossipInterval
	if iv <= 0 {
		iv = time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-r.stopc:
			return
		case <-t.C:
		}
		d := r.cfg.Gossip.Gossip()
		if d == nil {
			continue
		}
		msgs := d.Encode()
		for _, nb := range r.n.neighbours(r.self()) {
			for _, m := range msgs {
				r.n.forward(r.self(), nb, routed{kind: routedGossip, src: r.self(), msg: m})
			}
		}
	}
}

// forward carries m across the link from -> to, with its delay and its
// losses, to to's router.
func (n *Network) forward(from, to meshtransport.PeerName, m routed) {
	if n.linkBetween(from, to) == nil || n.lose(from, to) {
		return
	}
	m.from = from
	d := n.delay(from, to)
	if d <= 0 {
		n.forwardDirect(to, m)
		return
	}
	time.AfterFunc(d, func() { n.forwardDirect(to, m) })
}

// forwardDirect puts m in the inbox of to's router.
func (n *Network) forwardDirect(to meshtransport.PeerName, m routed) {
	n.mu.Lock()
	nd := n.byName[to]
	n.mu.Unlock()
	if nd == nil || nd.router == nil || !nd.router.started.Load() {
		return
	}
	select {
	case <-nd.router.stopc:
		return
	default:
	}
	nd.router.enqueue(m)
}

// reachable lists the nodes connected to name through live links.
func (n *Network) reachable(name meshtransport.PeerName) []meshtransport.PeerName {
	n.mu.Lock()
	defer n.mu.Unlock()
	seen := map[meshtransport.PeerName]bool{name: true}
	queue := []meshtransport.PeerName{name}
	var out []meshtransport.PeerName
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, nb := range n.neighboursLocked(cur) {
			if !seen[nb] {
				seen[nb] = true
				out = append(out, nb)
				queue = append(queue, nb)
			}
		}
	}
	return out
}
