package raftadaptertest

import (
	"container/heap"
	"math/rand/v2"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/internal/raftwire"
)

// Peer is the receiving side of a member, as a raftadapter.Node provides it.
type Peer interface {
	Step(m *raftpb.Message)
	ReportUnreachable(id uint64)
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
}

// NetworkConfig configures a Network. The zero value is a reliable,
// immediate, in-order network.
type NetworkConfig struct {
	// Seed seeds the random source for loss and delay.
	Seed uint64
	// DropRate is the probability in [0, 1) that a message is silently lost.
	// A lost snapshot is reported to its sender as failed.
	DropRate float64
	// MaxDelay delays each message by a uniform random duration in
	// [0, MaxDelay]; messages to one member may then arrive out of order.
	MaxDelay time.Duration
}

// NetworkStats counts messages.
type NetworkStats struct {
	Sent      uint64 // handed to Send
	Delivered uint64 // given to the receiver's Step
	Dropped   uint64 // lost to DropRate, an interceptor, cuts, or missing receivers
	InFlight  int    // sent and neither delivered nor dropped yet (held ones not included)
	Held      int    // held by an interceptor and not yet released
}

// Action is an interceptor's decision about one message.
type Action int

const (
	// Deliver lets the message go on as usual (loss, delay and cuts still apply).
	Deliver Action = iota
	// Drop loses the message silently, as DropRate does (a snapshot is
	// reported to its sender as failed).
	Drop
	// Hold keeps the message aside until Release, to deliver it late.
	Hold
	// Duplicate delivers the message as usual and also keeps a copy aside
	// until Release, like a network that delivers a message twice, the
	// second time late.
	Duplicate
)

// Interceptor decides, in Send, what happens to a message from member from.
// It must not modify m.
type Interceptor func(from uint64, m *raftpb.Message) Action

// Network is an in-memory message network for raft nodes in one process.
// Messages are encoded on Send and decoded on delivery with the codec
// meshtransport uses (internal/raftwire), like on a real wire. Each member's messages are delivered by one goroutine, in send
// order unless MaxDelay reorders them. Cuts are checked at delivery time, so
// a partition also catches messages already in flight; a message stopped by
// a cut or a missing receiver is reported to its sender as unreachable.
type Network struct {
	cfg  NetworkConfig
	quit chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	rng      *rand.Rand
	dropRate float64
	peers    map[uint64]Peer
	queues   map[uint64]*queue
	cut      map[link]bool
	isolated map[uint64]bool
	seq      uint64
	stats    NetworkStats
	closed   bool

	intercept Interceptor
	held      []*packet
}

type link struct{ from, to uint64 }

type packet struct {
	from, to uint64
	typ      raftpb.MessageType
	data     []byte
	lost     bool // lost to DropRate; delivered only as a failure report
	at       time.Time
	seq      uint64
}

// queue holds the packets for one destination, ordered by due time.
type queue struct {
	pkts   packetHeap
	notify chan struct{}
}

// NewNetwork returns a network with no members.
func NewNetwork(cfg NetworkConfig) *Network {
	return &Network{
		cfg:      cfg,
		quit:     make(chan struct{}),
		rng:      rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		dropRate: cfg.DropRate,
		peers:    make(map[uint64]Peer),
		queues:   make(map[uint64]*queue),
		cut:      make(map[link]bool),
		isolated: make(map[uint64]bool),
	}
}

// Endpoint is the sending side of member id; it implements raftadapter.Transport.
type Endpoint struct {
	net *Network
	id  uint64
}

// Transport returns the Transport for member id.
func (n *Network) Transport(id uint64) *Endpoint {
	return &Endpoint{net: n, id: id}
}

// Attach registers p as the receiver for id and starts its delivery
// goroutine. Attaching again replaces the receiver.
func (n *Network) Attach(id uint64, p Peer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.peers[id] = p
	n.queueLocked(id)
}

// Detach removes the receiver for id; messages to it are then dropped.
func (n *Network) Detach(id uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.peers, id)
}

// Disconnect cuts both directions between a and b.
func (n *Network) Disconnect(a, b uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[link{a, b}] = true
	n.cut[link{b, a}] = true
}

// Connect heals both directions between a and b.
func (n *Network) Connect(a, b uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cut, link{a, b})
	delete(n.cut, link{b, a})
}

// Cut stops messages from `from` to `to` only.
func (n *Network) Cut(from, to uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[link{from, to}] = true
}

// Uncut heals the one-way cut from `from` to `to`.
func (n *Network) Uncut(from, to uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cut, link{from, to})
}

// Isolate cuts id off from every other member in both directions.
// Rejoin undoes it; pairwise cuts are kept.
func (n *Network) Isolate(id uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated[id] = true
}

// Rejoin undoes Isolate.
func (n *Network) Rejoin(id uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.isolated, id)
}

// SetDropRate changes the probability of losing each message.
func (n *Network) SetDropRate(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dropRate = p
}

// Intercept installs f, which decides the fate of every message handed to
// Send from now on; nil removes it. f runs inside Send with the network's
// lock held, one call at a time: it must be quick and must not call the
// Network.
func (n *Network) Intercept(f Interceptor) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.intercept = f
}

// Release queues every held message for delivery, in the order they were
// held, and returns how many there were. Delay and cuts apply as if they had
// just been sent.
func (n *Network) Release() int {
	now := time.Now()
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return 0
	}
	held := n.held
	n.held = nil
	notify := make(map[*queue]bool)
	for _, p := range held {
		p.at = now
		if n.cfg.MaxDelay > 0 {
			p.at = p.at.Add(time.Duration(n.rng.Int64N(int64(n.cfg.MaxDelay) + 1)))
		}
		n.seq++
		p.seq = n.seq
		q := n.queueLocked(p.to)
		heap.Push(&q.pkts, p)
		notify[q] = true
	}
	n.stats.Held -= len(held)
	n.stats.InFlight += len(held)
	n.mu.Unlock()
	for q := range notify {
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
	return len(held)
}

// Stats returns the message counters.
func (n *Network) Stats() NetworkStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Close stops all delivery goroutines and drops whatever is in flight.
// It is idempotent.
func (n *Network) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	for _, q := range n.queues {
		n.stats.Dropped += uint64(q.pkts.Len())
		n.stats.InFlight -= q.pkts.Len()
		q.pkts = nil
	}
	n.stats.Dropped += uint64(len(n.held))
	n.stats.Held = 0
	n.held = nil
	close(n.quit)
	n.mu.Unlock()
	n.wg.Wait()
}

// Send marshals msgs and queues them for delivery. It never blocks.
func (e *Endpoint) Send(msgs []*raftpb.Message) {
	n := e.net
	now := time.Now()
	for _, m := range msgs {
		data, err := raftwire.Marshal(m)
		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			return
		}
		n.stats.Sent++
		if err != nil {
			n.stats.Dropped++
			n.mu.Unlock()
			continue
		}
		act := Deliver
		if n.intercept != nil {
			act = n.intercept(e.id, m)
		}
		to, typ := m.GetTo(), m.GetType()
		if act == Hold || act == Duplicate {
			n.held = append(n.held, &packet{from: e.id, to: to, typ: typ, data: data})
			n.stats.Held++
			if act == Hold {
				n.mu.Unlock()
				continue
			}
		}
		lost := act == Drop || (n.dropRate > 0 && n.rng.Float64() < n.dropRate)
		if lost && typ != raftpb.MsgSnap {
			n.stats.Dropped++
			n.mu.Unlock()
			continue
		}
		at := now
		if n.cfg.MaxDelay > 0 {
			at = at.Add(time.Duration(n.rng.Int64N(int64(n.cfg.MaxDelay) + 1)))
		}
		n.seq++
		q := n.queueLocked(to)
		heap.Push(&q.pkts, &packet{from: e.id, to: to, typ: typ, data: data, lost: lost, at: at, seq: n.seq})
		n.stats.InFlight++
		n.mu.Unlock()
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
}

// queueLocked returns the queue of id, starting its delivery goroutine.
func (n *Network) queueLocked(id uint64) *queue {
	q := n.queues[id]
	if q == nil {
		q = &queue{notify: make(chan struct{}, 1)}
		n.queues[id] = q
		n.wg.Go(func() { n.deliverLoop(q) })
	}
	return q
}

// deliverLoop is the delivery goroutine of one destination.
func (n *Network) deliverLoop(q *queue) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		n.mu.Lock()
		var due *packet
		wait := time.Duration(-1)
		if q.pkts.Len() > 0 {
			if d := time.Until(q.pkts[0].at); d <= 0 {
				due = heap.Pop(&q.pkts).(*packet)
			} else {
				wait = d
			}
		}
		n.mu.Unlock()
		if due != nil {
			n.deliver(due)
			continue
		}
		var timerC <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			timerC = timer.C
		}
		select {
		case <-q.notify:
		case <-timerC:
		case <-n.quit:
			timer.Stop()
			return
		}
		timer.Stop()
	}
}

func (n *Network) deliver(p *packet) {
	n.mu.Lock()
	src, dst := n.peers[p.from], n.peers[p.to]
	blocked := n.closed || dst == nil || n.cut[link{p.from, p.to}] || n.isolated[p.from] || n.isolated[p.to]
	n.mu.Unlock()

	delivered := false
	switch {
	case p.lost:
		if src != nil {
			src.ReportSnapshot(p.to, raft.SnapshotFailure)
		}
	case blocked:
		if src != nil {
			src.ReportUnreachable(p.to)
			if p.typ == raftpb.MsgSnap {
				src.ReportSnapshot(p.to, raft.SnapshotFailure)
			}
		}
	default:
		m, err := raftwire.Unmarshal(p.data)
		if err != nil {
			break // cannot happen for data Marshal produced; count it as lost
		}
		dst.Step(m)
		delivered = true
		if p.typ == raftpb.MsgSnap && src != nil {
			src.ReportSnapshot(p.to, raft.SnapshotFinish)
		}
	}

	n.mu.Lock()
	n.stats.InFlight--
	if delivered {
		n.stats.Delivered++
	} else {
		n.stats.Dropped++
	}
	n.mu.Unlock()
}

// packetHeap orders packets by due time, then by send order.
type packetHeap []*packet

func (h packetHeap) Len() int { return len(h) }
func (h packetHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h packetHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *packetHeap) Push(x any)   { *h = append(*h, x.(*packet)) }
func (h *packetHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return p
}
