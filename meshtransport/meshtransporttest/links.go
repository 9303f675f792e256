package meshtransporttest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshkv/meshkv/internal/peerlink"
	"github.com/meshkv/meshkv/meshtransport"
)

// node is one node's link layer (meshtransport.Links).
type node struct {
	n    *Network
	cfg  peerlink.Config
	key  peerlink.PublicKey
	name meshtransport.PeerName
	addr string

	router *memRouter
	recv   sync.WaitGroup // goroutines delivering to this node
	stopc  chan struct{}
	loops  sync.WaitGroup

	dgSent, dgRefused, dgReceived, dgReturned, linksUp, linksDown atomic.Uint64

	mu      sync.Mutex
	started bool
	closed  bool
	targets []string
	tstate  map[string]*targetState
}

type targetState struct {
	key          peerlink.PublicKey
	hasKey       bool
	self         bool
	failingSince time.Time
	lastErr      string
	lastTry      time.Time
}

var _ meshtransport.Links = (*node)(nil)

func (n *Network) newNode(cfg peerlink.Config) (*node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Handler == nil {
		return nil, errors.New("meshtransporttest: links need a handler")
	}
	key := cfg.Identity.PublicKey()
	nd := &node{
		n:     n,
		cfg:   cfg,
		key:   key,
		name:  meshtransport.PeerNameOf(key),
		addr:  cfg.ListenAddr,
		stopc: make(chan struct{}),
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if nd.addr == "" || nd.addr[len(nd.addr)-2:] == ":0" {
		n.seq++
		nd.addr = fmt.Sprintf("mem%d:%d", n.seq, 1000+n.seq)
	}
	if _, dup := n.byName[nd.name]; dup {
		return nil, fmt.Errorf("meshtransporttest: two nodes with one key")
	}
	n.byName[nd.name] = nd
	return nd, nil
}

func (nd *node) Start() error {
	n := nd.n
	n.mu.Lock()
	if nd.started || nd.closed {
		n.mu.Unlock()
		return peerlink.ErrStarted
	}
	if _, taken := n.byAddr[nd.addr]; taken {
		n.mu.Unlock()
		return fmt.Errorf("meshtransporttest: address %s in use", nd.addr)
	}
	n.byAddr[nd.addr] = nd
	nd.started = true
	n.mu.Unlock()
	nd.loops.Go(nd.dialLoop)
	return nil
}

// Close takes every link of the node down (its handler hears OnLinkDown
// for each) and stops dialling.
func (nd *node) Close() error {
	n := nd.n
	n.mu.Lock()
	if nd.closed {
		n.mu.Unlock()
		return nil
	}
	nd.closed = true
	if n.byAddr[nd.addr] == nd {
		delete(n.byAddr, nd.addr)
	}
	var links []*link
	for k, l := range n.links {
		if k[0] == nd.name || k[1] == nd.name {
			links = append(links, l)
		}
	}
	n.mu.Unlock()
	close(nd.stopc)
	for _, l := range links {
		l.down(peerlink.ErrShutdown)
	}
	nd.loops.Wait()
	nd.recv.Wait()
	return nil
}

func (nd *node) Addr() string { return nd.addr }

func (nd *node) SetTargets(addrs []string) error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	nd.targets = slices.Clone(addrs)
	next := make(map[string]*targetState, len(addrs))
	for _, a := range addrs {
		ts := nd.tstate[a]
		if ts == nil {
			ts = &targetState{}
		}
		next[a] = ts
	}
	nd.tstate = next
	return nil
}

func (nd *node) Send(peer peerlink.PublicKey, data []byte) bool {
	l := nd.n.linkBetween(nd.name, meshtransport.PeerNameOf(peer))
	if l == nil || !l.dir(nd.name).push(data, nd.n.delay(nd.name, meshtransport.PeerNameOf(peer))) {
		nd.dgRefused.Add(1)
		return false
	}
	nd.dgSent.Add(1)
	return true
}

func (nd *node) Links() []peerlink.LinkInfo {
	n := nd.n
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []peerlink.LinkInfo
	for k, l := range n.links {
		if l.isDown() || (k[0] != nd.name && k[1] != nd.name) {
			continue
		}
		other := l.a
		if other == nd {
			other = l.b
		}
		d := 2 * time.Millisecond
		if f := n.faults[dirKey{nd.name, other.name}]; f != nil {
			d += f.delay
		}
		if f := n.faults[dirKey{other.name, nd.name}]; f != nil {
			d += f.delay
		}
		out = append(out, peerlink.LinkInfo{
			PeerInfo: l.infoFor(nd), Since: l.since, RTT: d, Threshold: n.DeadAfter,
		})
	}
	slices.SortFunc(out, func(a, b peerlink.LinkInfo) int { return slices.Compare(a.Key[:], b.Key[:]) })
	return out
}

func (nd *node) Targets() []peerlink.TargetInfo {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	out := make([]peerlink.TargetInfo, 0, len(nd.targets))
	for _, a := range nd.targets {
		ts := nd.tstate[a]
		ti := peerlink.TargetInfo{Addr: a, Key: ts.key, HasKey: ts.hasKey, Self: ts.self,
			FailingSince: ts.failingSince, LastError: ts.lastErr}
		if ts.hasKey {
			ti.Linked = nd.n.linkBetween(nd.name, meshtransport.PeerNameOf(ts.key)) != nil
		}
		out = append(out, ti)
	}
	return out
}

func (nd *node) Stats() peerlink.Stats {
	return peerlink.Stats{
		HandshakeFailures: map[string]uint64{},
		LinksUp:           nd.linksUp.Load(),
		LinksDown:         nd.linksDown.Load(),
		DatagramsSent:     nd.dgSent.Load(),
		DatagramsRefused:  nd.dgRefused.Load(),
		DatagramsReceived: nd.dgReceived.Load(),
		DatagramsReturned: nd.dgReturned.Load(),
	}
}

// dialLoop tries every target without a link each RedialInterval.
func (nd *node) dialLoop() {
	t := time.NewTicker(nd.n.RedialInterval)
	defer t.Stop()
	for {
		nd.dialDue()
		select {
		case <-nd.stopc:
			return
		case <-t.C:
		}
	}
}

func (nd *node) dialDue() {
	nd.mu.Lock()
	targets := slices.Clone(nd.targets)
	nd.mu.Unlock()
	for _, a := range targets {
		nd.dial(a)
	}
}

// dial makes one attempt on target addr.
func (nd *node) dial(addr string) {
	n := nd.n
	now := time.Now()
	n.mu.Lock()
	peer := n.byAddr[addr]
	n.mu.Unlock()
	fail := func(why string) {
		nd.mu.Lock()
		if ts := nd.tstate[addr]; ts != nil {
			if ts.failingSince.IsZero() {
				ts.failingSince = now
			}
			ts.lastErr = why
		}
		nd.mu.Unlock()
	}
	switch {
	case peer == nil:
		fail("connection refused")
		return
	case peer == nd:
		nd.mu.Lock()
		if ts := nd.tstate[addr]; ts != nil {
			ts.self = true
		}
		nd.mu.Unlock()
		return
	}
	nd.mu.Lock()
	if ts := nd.tstate[addr]; ts != nil {
		ts.key, ts.hasKey = peer.key, true
	}
	nd.mu.Unlock()
	if n.linkBetween(nd.name, peer.name) != nil {
		return
	}
	if n.isCut(nd.name, peer.name) || n.isCut(peer.name, nd.name) {
		fail("i/o timeout")
		return
	}
	if nd.cfg.ClusterName != peer.cfg.ClusterName {
		fail("cluster name mismatch")
		return
	}
	if err := n.establish(nd, peer); err != nil {
		fail(err.Error())
		return
	}
	nd.mu.Lock()
	if ts := nd.tstate[addr]; ts != nil {
		ts.failingSince, ts.lastErr = time.Time{}, ""
	}
	nd.mu.Unlock()
}

// linkBetween returns the live link between two nodes.
func (n *Network) linkBetween(a, b meshtransport.PeerName) *link {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.links[pairOf(a, b)]
	if l == nil || l.isDown() {
		return nil
	}
	return l
}

// establish makes a link dialled by a to b, after the handshake time.
func (n *Network) establish(a, b *node) error {
	time.Sleep(n.Handshake + n.delay(a.name, b.name) + n.delay(b.name, a.name))
	if n.isCut(a.name, b.name) || n.isCut(b.name, a.name) {
		return errors.New("i/o timeout")
	}
	l := &link{n: n, a: a, b: b, since: time.Now()}
	if a.cfg.Authorize != nil {
		if err := a.cfg.Authorize(l.infoFor(a)); err != nil {
			return fmt.Errorf("refused: %w", err)
		}
	}
	if b.cfg.Authorize != nil {
		if err := b.cfg.Authorize(l.infoFor(b)); err != nil {
			return fmt.Errorf("refused by peer: %w", err)
		}
	}
	n.mu.Lock()
	if a.closed || b.closed {
		n.mu.Unlock()
		return peerlink.ErrShutdown
	}
	if cur := n.links[pairOf(a.name, b.name)]; cur != nil {
		if !cur.isDown() {
			n.mu.Unlock()
			return nil // the other side dialled first
		}
		// The old link is going down: its OnLinkDown calls must come
		// before this one's OnLinkUp.
		n.mu.Unlock()
		cur.wait()
		n.mu.Lock()
		if n.links[pairOf(a.name, b.name)] != cur {
			n.mu.Unlock()
			return nil
		}
	}
	l.ab = newDir(l, a, b)
	l.ba = newDir(l, b, a)
	n.links[pairOf(a.name, b.name)] = l
	a.recv.Add(1)
	b.recv.Add(1)
	n.mu.Unlock()
	a.linksUp.Add(1)
	b.linksUp.Add(1)
	go l.ba.run(&a.recv)
	go l.ab.run(&b.recv)
	// A cut that raced the handshake.
	if n.isCut(a.name, b.name) {
		n.cutChanged(a.name, b.name, true, n.cutGen(a.name, b.name))
	}
	if n.isCut(b.name, a.name) {
		n.cutChanged(b.name, a.name, true, n.cutGen(b.name, a.name))
	}
	n.routesChanged()
	return nil
}

// link is one live link between a (the dialler) and b.
type link struct {
	n      *Network
	a, b   *node
	ab, ba *dir
	since  time.Time
	downed atomic.Bool
	once   sync.Once
}

func (l *link) isDown() bool { return l.downed.Load() }

// dir returns the direction in which from sends.
func (l *link) dir(from meshtransport.PeerName) *dir {
	if from == l.a.name {
		return l.ab
	}
	return l.ba
}

// infoFor is the PeerInfo the node self sees for its peer.
func (l *link) infoFor(self *node) peerlink.PeerInfo {
	peer := l.a
	if self == l.a {
		peer = l.b
	}
	return peerlink.PeerInfo{
		Key:           peer.key,
		RemoteAddr:    peer.addr,
		AdvertiseAddr: peer.cfg.AdvertiseAddr,
		ClusterName:   peer.cfg.ClusterName,
		App:           slices.Clone(peer.cfg.AppHello),
		Dialled:       self == l.a,
		Version:       1,
	}
}

// down takes the link down: each side hears OnLinkDown with what it sent
// that the other side has not taken.
func (l *link) down(reason error) {
	l.once.Do(func() {
		l.downed.Store(true)
		fromA := l.ab.kill()
		fromB := l.ba.kill()
		l.a.dgReturned.Add(uint64(len(fromA)))
		l.b.dgReturned.Add(uint64(len(fromB)))
		l.a.linksDown.Add(1)
		l.b.linksDown.Add(1)
		// The down event for a travels in b -> a, and vice versa.
		l.ba.finish(reason, fromA)
		l.ab.finish(reason, fromB)
		l.n.mu.Lock()
		if l.n.links[pairOf(l.a.name, l.b.name)] == l {
			delete(l.n.links, pairOf(l.a.name, l.b.name))
		}
		l.n.mu.Unlock()
		l.n.routesChanged()
	})
}

// wait returns once both sides have heard OnLinkDown.
func (l *link) wait() {
	<-l.ab.done
	<-l.ba.done
}

// dir is one direction of a link: a queue of events for the receiving
// node, run by one goroutine, in order: up, datagrams, down.
type dir struct {
	l        *link
	from, to *node
	wakec    chan struct{}
	done     chan struct{}

	mu     sync.Mutex
	queue  []dgram
	held   bool // the direction is cut: nothing is delivered
	dead   bool
	reason error
	undel  [][]byte // handed to the receiver with the down event
	final  bool     // the down event is queued
}

type dgram struct {
	data []byte
	at   time.Time
}

// maxQueue mirrors peerlink's default SendQueue.
const maxQueue = 4096

func newDir(l *link, from, to *node) *dir {
	return &dir{l: l, from: from, to: to, wakec: make(chan struct{}, 1), done: make(chan struct{})}
}

func (d *dir) wake() {
	select {
	case d.wakec <- struct{}{}:
	default:
	}
}

func (d *dir) push(data []byte, delay time.Duration) bool {
	d.mu.Lock()
	if d.dead || len(d.queue) >= maxQueue {
		d.mu.Unlock()
		return false
	}
	d.queue = append(d.queue, dgram{data: data, at: time.Now().Add(delay)})
	d.mu.Unlock()
	d.wake()
	return true
}

func (d *dir) setHeld(held bool) {
	d.mu.Lock()
	d.held = held
	d.mu.Unlock()
	d.wake()
}

// kill stops delivery and returns what was not delivered.
func (d *dir) kill() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead = true
	out := make([][]byte, 0, len(d.queue))
	for _, g := range d.queue {
		out = append(out, g.data)
	}
	d.queue = nil
	return out
}

// finish queues the down event for the receiver.
func (d *dir) finish(reason error, undelivered [][]byte) {
	d.mu.Lock()
	d.reason, d.undel, d.final = reason, undelivered, true
	d.mu.Unlock()
	d.wake()
}

// run delivers to d.to: OnLinkUp, datagrams in order, then OnLinkDown.
func (d *dir) run(wg *sync.WaitGroup) {
	defer wg.Done()
	defer close(d.done)
	h := d.to.cfg.Handler
	h.OnLinkUp(d.l.infoFor(d.to))
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		if d.final {
			reason, undel := d.reason, d.undel
			d.mu.Unlock()
			h.OnLinkDown(d.from.key, reason, undel)
			return
		}
		var wait time.Duration = -1
		var data []byte
		if len(d.queue) > 0 && !d.held && !d.dead {
			g := d.queue[0]
			if now := time.Now(); g.at.After(now) {
				wait = g.at.Sub(now)
			} else {
				data = g.data
				d.queue[0] = dgram{}
				d.queue = d.queue[1:]
			}
		}
		d.mu.Unlock()
		if data != nil {
			d.to.dgReceived.Add(1)
			h.OnDatagram(d.from.key, data)
			continue
		}
		if wait >= 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-d.wakec:
				timer.Stop()
			}
			continue
		}
		<-d.wakec
	}
}
