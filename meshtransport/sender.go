package meshtransport

import (
	"errors"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/internal/raftwire"
)

// Queue bounds for what a sender holds besides raft messages.
const (
	maxCtrl   = 1024 // control frames (probes, replies, acks, membership)
	maxResend = 8192 // datagrams handed back by a dead link
	resendMax = 200 * time.Millisecond
	// pollRoute is how often a sender waiting for the router to drop a
	// dead link's route looks again (routes changing also wake it).
	pollRoute = 10 * time.Millisecond
	// maxXfers bounds queued chunked transfers per peer.
	maxXfers = 16
)

var (
	errNoPath = errors.New("no link and no route")
	errNoKey  = errors.New("no sealing key for the peer")
)

// sender is the one goroutine per peer that may block: it sends over the
// router (whose writes block until the first hop takes them), runs chunked
// transfers, and re-sends what a dead link handed back. Send puts raft
// messages on the link directly when it can; everything else comes here.
type sender struct {
	p     *peer
	wakec chan struct{} // capacity 1
	stopc chan struct{}

	mu       sync.Mutex
	stopped  bool
	report   bool // on stop, report queued raft messages unreachable
	items    []*raftpb.Message
	ctrl     [][]byte
	resendQ  [][]byte
	resendBy time.Time // give up waiting for the route change after this
	xfers    []*raftpb.Message
	acks     []ackIn
	stopOnce sync.Once
	active   []*outTransfer // owned by the goroutine
}

type ackIn struct {
	id  uint64
	ack chunkAck
}

func newSender(p *peer) *sender {
	return &sender{p: p, wakec: make(chan struct{}, 1), stopc: make(chan struct{})}
}

func (s *sender) wake() { signal(s.wakec) }

// stop ends the goroutine; report says whether queued raft messages are
// reported unreachable (the peer is gone) or silently dropped (Close).
func (s *sender) stop(report bool) {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopped, s.report = true, report
		s.mu.Unlock()
		close(s.stopc)
	})
}

// push queues raft messages for the relayed path; false when the queue is
// full or stopped (then nothing was queued).
func (s *sender) push(msgs ...*raftpb.Message) bool {
	s.mu.Lock()
	if s.stopped || len(s.items)+len(msgs) > s.p.t.cfg.QueueLen {
		s.mu.Unlock()
		return false
	}
	s.items = append(s.items, msgs...)
	s.mu.Unlock()
	s.wake()
	return true
}

// pushTransfer queues a message to send in chunks.
func (s *sender) pushTransfer(m *raftpb.Message) bool {
	s.mu.Lock()
	if s.stopped || len(s.xfers) >= maxXfers {
		s.mu.Unlock()
		return false
	}
	s.xfers = append(s.xfers, m)
	s.mu.Unlock()
	s.wake()
	return true
}

// pushCtrl queues a control frame.
func (s *sender) pushCtrl(frame []byte) bool {
	s.mu.Lock()
	if s.stopped || len(s.ctrl) >= maxCtrl {
		s.mu.Unlock()
		return false
	}
	s.ctrl = append(s.ctrl, frame)
	s.mu.Unlock()
	s.wake()
	return true
}

// resend queues the datagrams a dead link handed back; they go over the
// router once its route to the peer no longer uses that link (or after
// resendMax).
func (s *sender) resend(frames [][]byte, now time.Time) {
	s.mu.Lock()
	if !s.stopped {
		n := min(len(frames), maxResend-len(s.resendQ))
		if n < len(frames) {
			s.p.t.stats.drops[dropQueueFull].Add(uint64(len(frames) - n))
		}
		s.resendQ = append(s.resendQ, frames[:n]...)
		s.resendBy = now.Add(resendMax)
	}
	s.mu.Unlock()
	s.wake()
}

// onAck hands an acknowledgement of one of our transfers to the goroutine.
func (s *sender) onAck(id uint64, a chunkAck) {
	s.mu.Lock()
	if !s.stopped && len(s.acks) < 4*maxCtrl {
		s.acks = append(s.acks, ackIn{id, a})
	}
	s.mu.Unlock()
	s.wake()
}

// queued reports whether raft messages wait here (Send then queues behind
// them rather than overtaking them on the link).
func (s *sender) queued() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items) > 0 || len(s.resendQ) > 0
}

// run is the sender goroutine.
func (s *sender) run() {
	t := s.p.t
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-s.stopc:
			s.abandon()
			return
		case <-t.stopc:
			s.abandon()
			return
		case <-s.wakec:
		case <-timer.C:
		}
		next := s.pass(time.Now())
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), time.Millisecond))
		}
	}
}

// abandon empties a stopped sender, reporting its raft messages
// unreachable (and failing its transfers) when the peer is gone.
func (s *sender) abandon() {
	t := s.p.t
	s.mu.Lock()
	items, xfers, report := s.items, s.xfers, s.report
	s.items, s.xfers, s.ctrl, s.resendQ, s.acks = nil, nil, nil, nil, nil
	s.mu.Unlock()
	if !report {
		return
	}
	for _, m := range items {
		t.drop(m, dropNoRoute)
	}
	for _, m := range xfers {
		t.drop(m, dropNoRoute)
	}
	for _, o := range s.active {
		t.transferEnded(o, false)
	}
	s.active = nil
}

// pass does one round of work and returns when it wants to run again
// (zero: only when woken).
func (s *sender) pass(now time.Time) time.Time {
	p := s.p
	s.mu.Lock()
	ctrl, items, acks, xfers := s.ctrl, s.items, s.acks, s.xfers
	s.ctrl, s.items, s.acks, s.xfers = nil, nil, nil, nil
	var resendQ [][]byte
	var next time.Time
	if len(s.resendQ) > 0 {
		if p.linkUp.Load() || s.routeMoved() || !now.Before(s.resendBy) {
			resendQ, s.resendQ = s.resendQ, nil
		} else {
			next = now.Add(pollRoute)
		}
	}
	s.mu.Unlock()

	for _, a := range acks {
		s.applyAck(a, now)
	}
	if len(resendQ) > 0 {
		s.sendResend(resendQ)
	}
	for _, f := range ctrl {
		_, _ = s.deliver(f)
	}
	if len(items) > 0 {
		s.sendItems(items)
	}
	for _, m := range xfers {
		s.startTransfer(m, now)
	}
	if d := s.runTransfers(now); !d.IsZero() && (next.IsZero() || d.Before(next)) {
		next = d
	}
	return next
}

// routeMoved reports whether the router has a route to the peer that is
// not the peer's own (dead) link.
func (s *sender) routeMoved() bool {
	hop, ok := s.p.t.router.NextHop(s.p.name)
	return ok && hop != s.p.name
}

// sendResend re-sends a dead link's datagrams: on a new link if one came
// up, else sealed over the router.
func (s *sender) sendResend(frames [][]byte) {
	t := s.p.t
	for _, f := range frames {
		if _, err := s.deliver(f); err != nil {
			if h, _, herr := decodeHeader(f); herr == nil && h.kind == kindRaft {
				t.stats.drops[dropNoRoute].Add(1)
				t.reports.unreachable(uint64(s.p.id))
			}
			continue
		}
		t.stats.resent.Add(1)
	}
}

// deliver sends one frame: on the link if it is up and takes it, else
// sealed over the router (blocking until the first hop takes it). relayed
// says which.
func (s *sender) deliver(frame []byte) (relayed bool, err error) {
	p, t := s.p, s.p.t
	if p.linkUp.Load() && t.links.Send(p.key, frame) {
		p.stats.bytesDirect.Add(uint64(len(frame)))
		t.stats.bytesDirect.Add(uint64(len(frame)))
		return false, nil
	}
	return true, s.deliverSealed(frame)
}

// deliverSealed seals frame to the peer and hands it to the router.
func (s *sender) deliverSealed(frame []byte) error {
	p, t := s.p, s.p.t
	if hop, ok := t.router.NextHop(p.name); !ok || (hop == p.name && !p.linkUp.Load()) {
		return errNoPath
	}
	aead := p.cipher()
	if aead == nil {
		return errNoKey
	}
	env := seal(make([]byte, 0, sealOverhead+len(frame)), aead, t.id.PublicKey(), p.key, t.cfg.ClusterName, p.sendCtr.Add(1), frame)
	if err := t.router.Unicast(p.name, env); err != nil {
		return err
	}
	p.stats.bytesRelayed.Add(uint64(len(env)))
	t.stats.bytesRelayed.Add(uint64(len(env)))
	return nil
}

// sendItems batches raft messages into frames and sends them; messages
// that cannot be sent are dropped and reported.
func (s *sender) sendItems(items []*raftpb.Message) {
	p, t := s.p, s.p.t
	b := frameBatch{}
	flush := func() {
		if b.count == 0 {
			return
		}
		relayed, err := s.deliver(b.frame)
		if err != nil {
			t.stats.drops[dropNoRoute].Add(uint64(b.count))
			for _, m := range b.msgs {
				if m.GetType() == raftpb.MsgSnap {
					t.reports.snapshot(m.GetTo(), raft.SnapshotFailure)
				}
			}
			t.reports.unreachable(uint64(p.id))
		} else {
			t.countSent(p, b.count, relayed)
		}
		b = frameBatch{}
	}
	for _, m := range items {
		size := raftwire.Size(m)
		if b.count > 0 && len(b.frame)+raftEncodedLen(size) > MaxFrame {
			flush()
		}
		if b.count == 0 {
			b.frame = appendHeader(make([]byte, 0, min(MaxFrame, headerLen+raftEncodedLen(size)*len(items))),
				t.header(kindRaft, p.id, 0))
		}
		f, err := appendRaftMsg(b.frame, m, size)
		b.frame = f
		if err != nil {
			t.drop(m, dropEncode)
			continue
		}
		b.count++
		b.msgs = append(b.msgs, m)
	}
	flush()
}

type frameBatch struct {
	frame []byte
	count int
	msgs  []*raftpb.Message
}

// countSent counts raft messages sent to p.
func (t *Transport) countSent(p *peer, n int, relayed bool) {
	if relayed {
		t.stats.sentRelayed.Add(uint64(n))
		p.stats.msgsRelayed.Add(uint64(n))
		if p.currentPath() == PathDead {
			t.stats.suspect.Add(uint64(n))
		}
		return
	}
	t.stats.sentDirect.Add(uint64(n))
	p.stats.msgsDirect.Add(uint64(n))
}

// startTransfer encodes a large message and queues it as a transfer.
func (s *sender) startTransfer(m *raftpb.Message, now time.Time) {
	t := s.p.t
	size := raftwire.Size(m)
	if int64(size) > t.cfg.MaxTransfer {
		t.log.Error("message too large to send", "to", MemberID(m.GetTo()).String(), "type", m.GetType().String(), "bytes", size, "max", t.cfg.MaxTransfer)
		t.drop(m, dropEncode)
		return
	}
	data, err := raftwire.Append(make([]byte, 0, size), m, size)
	if err != nil {
		t.drop(m, dropEncode)
		return
	}
	s.active = append(s.active, newOutTransfer(t.nextTransfer.Add(1), m.GetTo(), m.GetType() == raftpb.MsgSnap, data, now))
}

func (s *sender) applyAck(a ackIn, now time.Time) {
	for i, o := range s.active {
		if o.id != a.id {
			continue
		}
		switch o.onAck(a.ack, now) {
		case transferDone:
			s.p.t.transferEnded(o, true)
			s.active = append(s.active[:i], s.active[i+1:]...)
		case transferFailed:
			s.p.t.transferEnded(o, false)
			s.active = append(s.active[:i], s.active[i+1:]...)
		}
		return
	}
}

// runTransfers advances the transfers: timeouts, then chunks the windows
// allow, one transfer at a time in order. It returns the next deadline.
func (s *sender) runTransfers(now time.Time) time.Time {
	t := s.p.t
	kept := s.active[:0]
	for i, o := range s.active {
		if i > 0 && o.next == 0 {
			// Waiting behind another transfer is not a lack of progress.
			o.progressAt = now
			kept = append(kept, o)
			continue
		}
		if o.tick(now, t.cfg.SnapshotTimeout) == transferFailed {
			t.log.Warn("chunked transfer timed out", "to", MemberID(o.raftTo).String(), "snapshot", o.snap,
				"bytes", len(o.data), "acked_chunks", o.acked, "chunks", o.count)
			t.transferEnded(o, false)
			continue
		}
		kept = append(kept, o)
	}
	clear(s.active[len(kept):])
	s.active = kept
	if len(s.active) == 0 {
		return time.Time{}
	}
	o := s.active[0]
	for {
		i, ok := o.due(now)
		if !ok {
			break
		}
		ch, data := o.chunk(i)
		f := appendHeader(make([]byte, 0, headerLen+chunkHdrLen+len(data)), t.header(kindChunk, MemberID(o.raftTo), o.id))
		f = appendChunk(f, ch, data)
		relayed, err := s.deliver(f)
		if err != nil {
			// No path now: the transfer waits (and fails by its deadline).
			o.next = i
			break
		}
		t.stats.chunksSent.Add(1)
		if relayed {
			t.stats.chunksSentRelayed.Add(1)
		}
		// Control traffic (probe replies, acks) must not wait behind a
		// long transfer.
		s.sendPendingCtrl()
	}
	return o.deadline(t.cfg.SnapshotTimeout)
}

// sendPendingCtrl sends control frames queued since the pass began.
func (s *sender) sendPendingCtrl() {
	s.mu.Lock()
	ctrl := s.ctrl
	s.ctrl = nil
	s.mu.Unlock()
	for _, f := range ctrl {
		_, _ = s.deliver(f)
	}
}

// transferEnded reports a finished transfer to raft.
func (t *Transport) transferEnded(o *outTransfer, ok bool) {
	switch {
	case ok && o.snap:
		t.stats.snapshotsSent.Add(1)
		t.reports.snapshot(o.raftTo, raft.SnapshotFinish)
	case ok:
	case o.snap:
		t.stats.snapshotsFailed.Add(1)
		t.reports.snapshot(o.raftTo, raft.SnapshotFailure)
		t.reports.unreachable(o.raftTo)
	default:
		t.reports.unreachable(o.raftTo)
	}
}
