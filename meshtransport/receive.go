package meshtransport

import (
	"fmt"
	"time"

	"github.com/meshkv/meshkv/internal/peerlink"
	"github.com/meshkv/meshkv/internal/raftwire"
)

// Bounds of the inbound queue between the link readers and the router's
// callbacks on one side and the inbound goroutine on the other.
const (
	inboundQueueLen   = 8192
	inboundQueueBytes = 256 << 20
	memberQueueLen    = 256
)

// inbound is one frame waiting for the inbound goroutine: a sealed
// envelope from the router (p nil), or a frame from a link (p set,
// already checked by receiveDatagram).
type inbound struct {
	p    *peer
	h    header
	body []byte
	env  []byte
}

// enqueue hands work to the inbound goroutine; a full queue drops it.
func (t *Transport) enqueue(in inbound, size int) {
	n := int64(size)
	if t.inboundHeld.Add(n) > inboundQueueBytes {
		t.inboundHeld.Add(-n)
		t.stats.drops[dropInboundFull].Add(1)
		return
	}
	select {
	case t.inboundc <- in:
	default:
		t.inboundHeld.Add(-n)
		t.stats.drops[dropInboundFull].Add(1)
	}
}

// receiveDatagram handles a frame that arrived on the link from key. It runs
// on the link's reader goroutine: raft batches are checked and stepped here,
// everything else goes to the inbound goroutine.
func (t *Transport) receiveDatagram(key peerlink.PublicKey, data []byte) {
	p := t.peerByKey(key)
	if p == nil || t.closed.Load() {
		return
	}
	h, body, ok := t.checkFrame(p, data)
	if !ok {
		return
	}
	p.stats.bytesIn.Add(uint64(len(data)))
	t.stats.bytesReceived.Add(uint64(len(data)))
	if h.kind == kindRaft {
		t.deliverRaft(p, h, body, false)
		return
	}
	t.enqueue(inbound{p: p, h: h, body: body}, len(data))
}

// deliverSealed is the router's delivery callback (on one of its
// goroutines): it only queues the envelope.
func (t *Transport) deliverSealed(env []byte) {
	if t.closed.Load() {
		return
	}
	if len(env) < sealOverhead || env[0] != sealVersion {
		t.stats.drops[dropMalformed].Add(1)
		return
	}
	t.enqueue(inbound{env: env}, len(env))
}

// checkFrame decodes a frame from p and applies the checks every frame
// must pass: well formed, sent by the raft id of p's key, of our cluster
// where that matters, and for us.
func (t *Transport) checkFrame(p *peer, frame []byte) (header, []byte, bool) {
	h, body, err := decodeHeader(frame)
	if err != nil {
		t.stats.drops[dropMalformed].Add(1)
		t.violation(p, "malformed frame: %v", err)
		return h, nil, false
	}
	if MemberID(h.from) != p.id {
		t.stats.drops[dropSpoofed].Add(1)
		t.violation(p, "%v frame claims sender %v", h.kind, MemberID(h.from))
		return h, nil, false
	}
	if MemberID(h.to) != t.id.RaftID() {
		t.stats.drops[dropMisaddressed].Add(1)
		return h, nil, false
	}
	switch h.kind {
	case kindRaft, kindChunk, kindRemoved, kindQuery, kindReply, kindJoin:
		if !t.clusterOK(p, h.cluster) {
			return h, nil, false
		}
	}
	return h, body, true
}

// violation logs a protocol violation by p, at most once per 10s per peer.
func (t *Transport) violation(p *peer, format string, args ...any) {
	if ok, suppressed := t.violog.Allow(p.id.String(), time.Now()); ok {
		t.log.Warn("dropping traffic that breaks the rules", "peer", p.id.String(), "name", p.name.String(),
			"what", fmt.Sprintf(format, args...), "suppressed", suppressed)
	}
}

// clusterOK applies the cluster id rule, logging each foreign id once.
func (t *Transport) clusterOK(p *peer, id uint64) bool {
	ours := t.clusterID.Load()
	if id == 0 || ours == 0 || id == ours {
		return true
	}
	t.stats.drops[dropForeignCluster].Add(1)
	t.mu.Lock()
	seen := t.foreign[id]
	if !seen && len(t.foreign) < 1024 {
		t.foreign[id] = true
	}
	t.mu.Unlock()
	if !seen {
		t.log.Error("dropping traffic from a foreign cluster: two clusters share this mesh, or a peer kept a stale cluster id",
			"from", p.id.String(), "their_cluster_id", fmt.Sprintf("%x", id), "our_cluster_id", fmt.Sprintf("%x", ours))
	}
	return false
}

// deliverRaft steps every message of a raft batch from p into the handler,
// after checking that each is from p and for us.
func (t *Transport) deliverRaft(p *peer, h header, body []byte, relayed bool) {
	hd := t.currentHandler()
	self := uint64(t.id.RaftID())
	for len(body) > 0 {
		enc, rest, err := nextRaftMsg(body)
		if err != nil {
			t.stats.drops[dropMalformed].Add(1)
			t.violation(p, "malformed raft batch")
			return
		}
		body = rest
		if hd == nil {
			t.stats.drops[dropNoHandler].Add(1)
			continue
		}
		m, err := raftwire.Unmarshal(enc)
		if err != nil {
			t.stats.drops[dropMalformed].Add(1)
			t.violation(p, "undecodable raft message: %v", err)
			continue
		}
		if m.GetFrom() != uint64(p.id) {
			t.stats.drops[dropSpoofed].Add(1)
			t.violation(p, "raft %v claims to be from %v", m.GetType(), MemberID(m.GetFrom()))
			continue
		}
		if m.GetTo() != self {
			t.stats.drops[dropMisaddressed].Add(1)
			continue
		}
		t.stats.received.Add(1)
		p.stats.msgsIn.Add(1)
		if relayed {
			t.stats.receivedRelayed.Add(1)
			p.stats.msgsInRelayed.Add(1)
		}
		hd.Step(m)
	}
}

// inboundLoop is the inbound goroutine: it opens sealed envelopes, owns
// chunk reassembly and the replay windows, and handles every frame that is
// not a raft batch from a link.
func (t *Transport) inboundLoop() {
	ra := newReassembler(t.cfg.SnapshotTimeout, 2*t.cfg.MaxTransfer)
	tick := time.NewTicker(max(t.cfg.SnapshotTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-t.stopc:
			return
		case in := <-t.inboundc:
			size := len(in.env)
			if in.env == nil {
				size = headerLen + len(in.body)
			}
			t.inboundHeld.Add(-int64(size))
			if in.env != nil {
				t.openSealed(ra, in.env)
				continue
			}
			t.dispatch(ra, in.p, in.h, in.body, false)
		case now := <-tick.C:
			if n := ra.expire(now); n > 0 {
				t.stats.transfersAbandoned.Add(uint64(n))
			}
			t.stats.reassemblyHeld.Store(ra.held)
			byKey := *t.byKey.Load()
			for k := range ra.done {
				if byKey[k] == nil {
					ra.forget(k)
				}
			}
			for k := range ra.m {
				if byKey[k] == nil {
					ra.forget(k)
				}
			}
			t.stats.reassemblyHeld.Store(ra.held)
		}
	}
}

// openSealed authenticates an envelope, checks its counter and handles its
// frame.
func (t *Transport) openSealed(ra *reassembler, env []byte) {
	origin, err := sealOrigin(env)
	if err != nil {
		t.stats.drops[dropMalformed].Add(1)
		return
	}
	p := t.peerByKey(origin)
	if p == nil {
		t.stats.drops[dropUnknownOrigin].Add(1)
		return
	}
	aead := p.cipher()
	if aead == nil {
		t.stats.drops[dropUnknownOrigin].Add(1)
		return
	}
	ctr, frame, err := open(aead, t.id.PublicKey(), t.cfg.ClusterName, env)
	if err != nil {
		t.stats.drops[dropBadSeal].Add(1)
		return
	}
	if !p.replay.accept(ctr) {
		t.stats.drops[dropReplay].Add(1)
		return
	}
	h, body, ok := t.checkFrame(p, frame)
	if !ok {
		return
	}
	p.stats.bytesIn.Add(uint64(len(env)))
	t.stats.bytesReceived.Add(uint64(len(env)))
	t.dispatch(ra, p, h, body, true)
}

// dispatch handles a checked frame from p on the inbound goroutine.
func (t *Transport) dispatch(ra *reassembler, p *peer, h header, body []byte, relayed bool) {
	switch h.kind {
	case kindRaft:
		t.deliverRaft(p, h, body, relayed)
	case kindChunk:
		t.receiveChunk(ra, p, h, body)
	case kindChunkAck:
		a, err := decodeChunkAck(body)
		if err != nil {
			t.stats.drops[dropMalformed].Add(1)
			return
		}
		p.out.onAck(h.seq, a)
	case kindProbe:
		if len(body) != 0 {
			t.stats.drops[dropMalformed].Add(1)
			return
		}
		if t.sendControl(p, appendHeader(make([]byte, 0, headerLen), t.header(kindProbeReply, p.id, h.seq))) {
			t.stats.probeReplies.Add(1)
		}
	case kindProbeReply:
		if len(body) != 0 {
			t.stats.drops[dropMalformed].Add(1)
			return
		}
		t.probeReplied(p, h.seq, time.Now())
	case kindRemoved, kindQuery, kindReply, kindJoin:
		t.receiveMember(p, h, body)
	}
}

// receiveChunk adds a chunk to p's transfer, delivers a completed message
// and acknowledges.
func (t *Transport) receiveChunk(ra *reassembler, p *peer, h header, body []byte) {
	ch, data, err := decodeChunk(body, t.cfg.MaxTransfer)
	if err != nil {
		t.stats.drops[dropMalformed].Add(1)
		t.violation(p, "bad chunk: %v", err)
		return
	}
	t.stats.chunksReceived.Add(1)
	hd := t.currentHandler()
	if hd == nil {
		// Neither stored nor acknowledged: the sender times out and raft
		// tries again once we have a handler.
		t.stats.drops[dropNoHandler].Add(1)
		return
	}
	res := ra.add(p.key, h.seq, ch, data, time.Now())
	t.stats.reassemblyHeld.Store(ra.held)
	if res.refused {
		t.stats.drops[dropTransferRefused].Add(1)
	}
	if res.payload != nil {
		m, err := raftwire.Unmarshal(res.payload)
		switch {
		case err != nil:
			t.stats.drops[dropMalformed].Add(1)
			t.violation(p, "undecodable chunked raft message: %v", err)
			res.ack = chunkAck{status: ackRejected}
		case m.GetFrom() != uint64(p.id):
			t.stats.drops[dropSpoofed].Add(1)
			t.violation(p, "chunked raft %v claims to be from %v", m.GetType(), MemberID(m.GetFrom()))
			res.ack = chunkAck{status: ackRejected}
		case m.GetTo() != uint64(t.id.RaftID()):
			t.stats.drops[dropMisaddressed].Add(1)
			res.ack = chunkAck{status: ackRejected}
		default:
			t.stats.received.Add(1)
			p.stats.msgsIn.Add(1)
			if m.GetSnapshot() != nil {
				t.stats.snapshotsReceived.Add(1)
			}
			hd.Step(m)
		}
	}
	if res.send {
		f := appendHeader(make([]byte, 0, headerLen+chunkAckLen), t.header(kindChunkAck, p.id, h.seq))
		t.sendControl(p, appendChunkAck(f, res.ack))
	}
}
