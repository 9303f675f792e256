package meshtransport

import (
	"cmp"
	"errors"
	"hash/crc32"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshkv/meshkv/internal/raftwire"
	"github.com/weaveworks/mesh"
	"go.etcd.io/raft/v3/raftpb"
)

// A link is everything we keep for one destination peer: its bounded send
// queue, the liveness of its direct route, and the one sender goroutine that
// writes to it (mesh writes block, so nobody else ever writes to a peer on
// the raft loop's behalf).

// errNoRoute means neither the direct route nor a detour can carry a frame.
var errNoRoute = errors.New("no live route")

// Queue bounds for control traffic, which bypasses the raft queue.
const (
	maxPendingReplies = 8
	maxPendingAcks    = 256
	maxForwardBytes   = 64 << 20
	// maxRaftFrame leaves room for a relay wrapper around a raft batch.
	maxRaftFrame = MaxFrame - 2*headerLen - relayHdrLen
)

// outItem is one raft message waiting in a link's queue.
type outItem struct {
	dst *link // final destination: the owning link, or another when detoured through the owner
	msg *raftpb.Message
}

type ackItem struct {
	id     uint64
	status byte
	raftTo uint64
}

// routeInfo is how frames for a link travel right now. It is replaced, never
// modified, so Send can read it without locks.
type routeInfo struct {
	dead  bool
	relay *link // when dead: the detour through a live third peer, nil if none
}

var directRoute = &routeInfo{}

type link struct {
	t      *Transport
	peer   mesh.PeerName
	raftID atomic.Uint64 // from the peer's gossiped Meta
	route  atomic.Pointer[routeInfo]
	wakec  chan struct{} // capacity 1: coalesced "work pending"
	stopc  chan struct{}
	// reportOnStop: when stopped because the peer left (not on Close), the
	// queued messages are reported unreachable.
	reportOnStop atomic.Bool
	stopOnce     sync.Once

	mu       sync.Mutex
	stopped  bool
	items    []outItem
	spare    []outItem // the previous batch's slice, reused
	probeSeq uint64    // probe to send, 0 = none
	replies  []uint64
	acks     []ackItem
	fwd      [][]byte
	fwdBytes int
	probe    probeState

	// Owned by the sender goroutine.
	buf, wrap []byte
	frameSeq  uint64
}

func newLink(t *Transport, peer mesh.PeerName) *link {
	l := &link{
		t:     t,
		peer:  peer,
		wakec: make(chan struct{}, 1),
		stopc: make(chan struct{}),
		probe: newProbeState(t.cfg.ProbeFailures),
	}
	l.route.Store(directRoute)
	return l
}

func (l *link) wake() {
	select {
	case l.wakec <- struct{}{}:
	default:
	}
}

func (l *link) stop(report bool) {
	l.stopOnce.Do(func() {
		l.reportOnStop.Store(report)
		l.mu.Lock()
		l.stopped = true
		l.mu.Unlock()
		close(l.stopc)
	})
}

// push queues a raft message without waking the sender (the caller wakes
// it once for a whole Send, so that one Send becomes one batch); false means
// the queue is full or stopped.
func (l *link) push(it outItem) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped || len(l.items) >= l.t.cfg.QueueLen {
		return false
	}
	l.items = append(l.items, it)
	return true
}

func (l *link) pushReply(seq uint64) {
	l.mu.Lock()
	if len(l.replies) >= maxPendingReplies {
		l.replies = l.replies[1:]
	}
	l.replies = append(l.replies, seq)
	l.mu.Unlock()
	l.wake()
}

func (l *link) pushAck(a ackItem) bool {
	l.mu.Lock()
	if l.stopped || len(l.acks) >= maxPendingAcks {
		l.mu.Unlock()
		return false
	}
	l.acks = append(l.acks, a)
	l.mu.Unlock()
	l.wake()
	return true
}

// pushForward queues a relay frame received for this link's peer.
func (l *link) pushForward(frame []byte) bool {
	l.mu.Lock()
	if l.stopped || len(l.fwd) >= l.t.cfg.QueueLen || l.fwdBytes+len(frame) > maxForwardBytes {
		l.mu.Unlock()
		return false
	}
	l.fwd = append(l.fwd, frame)
	l.fwdBytes += len(frame)
	l.mu.Unlock()
	l.wake()
	return true
}

// tickProbe closes a probe round (see probeState.tick) and asks the sender
// goroutine to send the next probe.
func (l *link) tickProbe(now time.Time) (changed bool) {
	l.mu.Lock()
	seq, changed := l.probe.tick(now)
	l.probeSeq = seq
	l.mu.Unlock()
	l.wake()
	return changed
}

// onProbeReply applies a probe reply; a peer coming back to life gets its
// direct route back at once.
func (l *link) onProbeReply(seq uint64, now time.Time, live []mesh.PeerName) (changed bool) {
	l.mu.Lock()
	changed = l.probe.reply(seq, now, live)
	alive := l.probe.state == stateAlive
	l.mu.Unlock()
	if changed && alive {
		l.route.Store(directRoute)
	}
	return changed
}

// liveness returns the probe verdict for the peer.
func (l *link) liveness() (st linkState, rtt time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.probe.state, l.probe.rtt
}

// candidate describes l as a relay towards dst.
func (l *link) candidate(dst mesh.PeerName) relayCandidate {
	l.mu.Lock()
	defer l.mu.Unlock()
	return relayCandidate{
		name:    l.peer,
		alive:   l.probe.state == stateAlive,
		rtt:     l.probe.rtt,
		seesDst: l.probe.sees(dst),
	}
}

// work is what one pass of the sender goroutine takes from the link.
type work struct {
	probe   uint64
	replies []uint64
	acks    []ackItem
	fwd     [][]byte
	items   []outItem
}

func (l *link) take() (w work, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w = work{probe: l.probeSeq, replies: l.replies, acks: l.acks, fwd: l.fwd, items: l.items}
	if w.probe == 0 && len(w.replies) == 0 && len(w.acks) == 0 && len(w.fwd) == 0 && len(w.items) == 0 {
		return w, false
	}
	l.probeSeq, l.replies, l.acks, l.fwd, l.fwdBytes = 0, nil, nil, nil, 0
	l.items, l.spare = l.spare[:0], nil
	return w, true
}

// recycle hands a drained item slice back for reuse, dropping references.
func (l *link) recycle(items []outItem) {
	clear(items)
	l.mu.Lock()
	if l.spare == nil && cap(items) <= 2*l.t.cfg.QueueLen {
		l.spare = items[:0]
	}
	l.mu.Unlock()
}

// run is the sender goroutine: it drains the link whenever woken.
func (l *link) run() {
	for {
		select {
		case <-l.stopc:
			l.abandon()
			return
		case <-l.wakec:
		}
		for {
			w, ok := l.take()
			if !ok {
				break
			}
			l.send(w)
			select {
			case <-l.stopc:
				l.abandon()
				return
			default:
			}
		}
	}
}

// abandon empties a stopped link, reporting its raft messages unreachable
// when the peer left (on Close nobody is told).
func (l *link) abandon() {
	l.mu.Lock()
	items := l.items
	l.items, l.spare, l.acks, l.fwd, l.replies = nil, nil, nil, nil, nil
	l.mu.Unlock()
	if !l.reportOnStop.Load() {
		return
	}
	for i := range items {
		l.t.drop(items[i].msg, &l.t.stats.droppedNoRoute)
	}
}

func (l *link) send(w work) {
	t := l.t
	l.sendControl(w.probe, w.replies, w.acks)
	for _, f := range w.fwd {
		// Forwarded frames go direct only, whatever the probes say: a
		// relayed frame is never relayed again.
		if l.unicast(l.peer, f) != nil {
			t.stats.relayDropped.Add(1)
			continue
		}
		t.stats.relayed.Add(1)
	}
	if len(w.items) > 0 {
		l.sendItems(w.items)
		l.recycle(w.items)
	}
}

// sendControl sends probes, probe replies and chunk acks. They go before any
// data and between the chunks of a transfer, so that a long transfer does not
// make a healthy link look dead.
func (l *link) sendControl(probe uint64, replies []uint64, acks []ackItem) {
	t := l.t
	if probe != 0 {
		f := appendHeader(l.buf[:0], l.header(kindProbe, l.raftID.Load(), probe))
		l.buf = f
		if l.unicast(l.peer, f) == nil {
			t.stats.probesSent.Add(1)
		}
	}
	if len(replies) > 0 {
		live := t.liveSet()
		for _, seq := range replies {
			f := appendHeader(l.buf[:0], l.header(kindProbeReply, l.raftID.Load(), seq))
			f = appendLiveSet(f, live)
			l.buf = f
			if l.unicast(l.peer, f) == nil {
				t.stats.probeReplies.Add(1)
			}
		}
	}
	for _, a := range acks {
		f := appendHeader(l.buf[:0], l.header(kindChunkAck, a.raftTo, a.id))
		f = append(f, a.status)
		l.buf = f
		_, _ = l.deliver(l, f)
	}
}

// sendPendingControl sends the control frames queued since the last take,
// leaving data for the next pass.
func (l *link) sendPendingControl() {
	l.mu.Lock()
	probe, replies, acks := l.probeSeq, l.replies, l.acks
	l.probeSeq, l.replies, l.acks = 0, nil, nil
	l.mu.Unlock()
	if probe != 0 || len(replies) > 0 || len(acks) > 0 {
		l.sendControl(probe, replies, acks)
	}
}

func (l *link) header(k frameKind, to, seq uint64) header {
	return header{kind: k, cluster: l.t.clusterID.Load(), from: l.t.ownRaft.Load(), to: to, seq: seq}
}

func (l *link) unicast(dst mesh.PeerName, frame []byte) error {
	if err := l.t.net.unicast(dst, frame); err != nil {
		return err
	}
	l.t.stats.unicasts.Add(1)
	return nil
}

// deliver sends a frame meant for dst's peer: direct when dst is l and its
// route lives, wrapped in a relay envelope otherwise. It reports whether the
// frame took a detour.
func (l *link) deliver(dst *link, frame []byte) (detoured bool, err error) {
	if dst == l {
		r := l.route.Load()
		if !r.dead {
			return false, l.unicast(l.peer, frame)
		}
		if r.relay == nil {
			// No detour: try the direct way anyway (see Transport.Send).
			return false, l.unicast(l.peer, frame)
		}
		return true, l.sendVia(r.relay.peer, l.peer, frame)
	}
	// l is the relay chosen for dst.
	if l.route.Load().dead {
		return false, errNoRoute
	}
	return true, l.sendVia(l.peer, dst.peer, frame)
}

// sendVia wraps frame for dst in a relay envelope and sends it to relay.
func (l *link) sendVia(relay, dst mesh.PeerName, frame []byte) error {
	ih, _, err := decodeHeader(frame)
	if err != nil {
		return err
	}
	w := appendHeader(l.wrap[:0], l.header(kindRelay, ih.to, ih.seq))
	w = appendRelayHeader(w, l.t.name, dst)
	w = append(w, frame...)
	l.wrap = w
	return l.unicast(relay, w)
}

// batch is a raft frame being filled for one destination.
type batch struct {
	dst   *link
	to    uint64
	count int
	frame []byte
}

// sendItems batches queued raft messages into as few frames as fit, one
// destination at a time, and sends large messages as chunked transfers.
func (l *link) sendItems(items []outItem) {
	if slices.ContainsFunc(items, func(it outItem) bool { return it.dst != items[0].dst }) {
		slices.SortStableFunc(items, func(a, b outItem) int { return cmp.Compare(a.dst.peer, b.dst.peer) })
	}
	var b batch
	for i := range items {
		it := &items[i]
		size := raftwire.Size(it.msg)
		to := it.msg.GetTo()
		if it.msg.GetType() == raftpb.MsgSnap || size > ChunkSize {
			l.flush(&b)
			l.sendChunked(it, size)
			continue
		}
		if b.count > 0 && (b.dst != it.dst || b.to != to || len(b.frame)+raftEncodedLen(size) > maxRaftFrame) {
			l.flush(&b)
		}
		if b.count == 0 {
			l.frameSeq++
			b = batch{dst: it.dst, to: to, frame: appendHeader(l.buf[:0], l.header(kindRaft, to, l.frameSeq))}
		}
		f, err := appendRaftMsg(b.frame, it.msg, size)
		b.frame = f
		if err != nil {
			l.t.drop(it.msg, &l.t.stats.droppedEncode)
			continue
		}
		b.count++
	}
	l.flush(&b)
}

func (l *link) flush(b *batch) {
	if b.count == 0 {
		return
	}
	l.buf = b.frame
	t := l.t
	detoured, err := l.deliver(b.dst, b.frame)
	if err != nil {
		t.stats.droppedNoRoute.Add(uint64(b.count))
		t.reports.unreachable(b.to)
	} else {
		t.stats.sent.Add(uint64(b.count))
		if detoured {
			t.stats.detoured.Add(uint64(b.count))
		}
	}
	*b = batch{}
}

// sendChunked sends one message as a transfer of chunks; the outcome is
// reported when the receiver acknowledges it, or when it times out.
func (l *link) sendChunked(it *outItem, size int) {
	t := l.t
	to, typ := it.msg.GetTo(), it.msg.GetType()
	if size > MaxTransfer {
		t.logger.Error("message too large to send", "to", to, "type", typ, "bytes", size, "max", MaxTransfer)
		t.drop(it.msg, &t.stats.droppedEncode)
		return
	}
	data, err := raftwire.Append(make([]byte, 0, size), it.msg, size)
	if err != nil {
		t.drop(it.msg, &t.stats.droppedEncode)
		return
	}
	id := t.nextTransfer.Add(1)
	t.transfers.start(id, &outTransfer{dst: it.dst.peer, raftTo: to, snap: typ == raftpb.MsgSnap})
	count := uint32((uint64(size) + ChunkSize - 1) / ChunkSize)
	sum := crc32.Checksum(data, castagnoli)
	for i := range count {
		select {
		case <-l.stopc:
			t.failTransfer(id)
			return
		default:
		}
		start := int(i) * ChunkSize
		chunk := data[start : start+int(chunkLen(uint64(size), i))]
		f := appendHeader(l.buf[:0], l.header(kindChunk, to, id))
		f = appendChunk(f, chunkHeader{index: i, count: count, total: uint64(size), crc: crc32.Checksum(chunk, castagnoli), sum: sum}, chunk)
		l.buf = f
		detoured, err := l.deliver(it.dst, f)
		if err != nil {
			t.failTransfer(id)
			return
		}
		t.stats.chunksSent.Add(1)
		if detoured {
			t.stats.detouredChunks.Add(1)
		}
		l.sendPendingControl()
	}
	t.transfers.written(id, time.Now().Add(t.cfg.SnapshotTimeout))
}
