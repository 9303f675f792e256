package meshtransport

import (
	"time"

	"github.com/meshkv/meshkv/internal/raftwire"
	"github.com/weaveworks/mesh"
)

// Bounds of the inbound queue between mesh's callbacks and our inbound
// goroutine.
const (
	inboundQueueLen   = 8192
	inboundQueueBytes = 256 << 20
)

// inbound is one frame handed over by a mesh callback.
type inbound struct {
	src  mesh.PeerName
	data []byte
}

// rawReceiver is the mesh.Gossiper of the frame channel. Its callbacks run on
// mesh's connection goroutines: they never block, never send and never
// return an error (an error would make mesh close the connection).
type rawReceiver struct{ t *Transport }

var _ mesh.Gossiper = (*rawReceiver)(nil)

// OnGossipUnicast checks the minimal header and hands the frame to the
// inbound goroutine; a full queue drops it. Mesh gives us a fresh slice per
// message, so it is kept without copying.
func (r *rawReceiver) OnGossipUnicast(src mesh.PeerName, msg []byte) error {
	t := r.t
	if t.closed.Load() {
		return nil
	}
	if len(msg) < headerLen || msg[0] != wireVersion {
		t.stats.malformed.Add(1)
		return nil
	}
	n := int64(len(msg))
	if t.inboundHeld.Add(n) > inboundQueueBytes {
		t.inboundHeld.Add(-n)
		t.stats.droppedInbound.Add(1)
		return nil
	}
	select {
	case t.inboundc <- inbound{src: src, data: msg}:
	default:
		t.inboundHeld.Add(-n)
		t.stats.droppedInbound.Add(1)
	}
	return nil
}

// OnGossipBroadcast implements mesh.Gossiper; nothing is broadcast on this
// channel.
func (r *rawReceiver) OnGossipBroadcast(mesh.PeerName, []byte) (mesh.GossipData, error) {
	return nil, nil
}

// Gossip implements mesh.Gossiper; this channel has no gossip state.
func (r *rawReceiver) Gossip() mesh.GossipData { return nil }

// OnGossip implements mesh.Gossiper; this channel has no gossip state.
func (r *rawReceiver) OnGossip([]byte) (mesh.GossipData, error) { return nil, nil }

// inboundLoop is the inbound goroutine: it owns the reassembler and handles
// every frame in arrival order.
func (t *Transport) inboundLoop() {
	ra := newReassembler(t.cfg.SnapshotTimeout, reassemblyBytes)
	tick := time.NewTicker(max(t.cfg.SnapshotTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-t.stopc:
			return
		case f := <-t.inboundc:
			t.inboundHeld.Add(-int64(len(f.data)))
			t.handleFrame(ra, f.src, f.data, false)
		case now := <-tick.C:
			if n := ra.expire(now); n > 0 {
				t.stats.transfersAbandoned.Add(uint64(n))
			}
		}
	}
}

// clusterOK applies the cluster id rule, logging each foreign id once.
func (t *Transport) clusterOK(src mesh.PeerName, id uint64) bool {
	ours := t.clusterID.Load()
	if id == 0 || ours == 0 || id == ours {
		return true
	}
	t.stats.foreignCluster.Add(1)
	t.mu.Lock()
	seen := t.foreign[id]
	if !seen && len(t.foreign) < 1024 {
		t.foreign[id] = true
	}
	t.mu.Unlock()
	if !seen {
		t.logger.Error("dropping traffic from a foreign cluster: two clusters share this mesh, or a peer kept a stale cluster id",
			"from", src.String(), "their_cluster_id", id, "our_cluster_id", ours)
	}
	return false
}

// handleFrame processes one frame from src. relayed says it arrived inside a
// relay envelope (src is then the origin, not the relay).
func (t *Transport) handleFrame(ra *reassembler, src mesh.PeerName, frame []byte, relayed bool) {
	h, body, err := decodeHeader(frame)
	if err != nil {
		t.stats.malformed.Add(1)
		return
	}
	if !t.clusterOK(src, h.cluster) {
		return
	}
	switch h.kind {
	case kindRaft:
		t.deliverBatch(h, body)
	case kindChunk:
		t.handleChunk(ra, src, h, body)
	case kindChunkAck:
		if len(body) != 1 {
			t.stats.malformed.Add(1)
			return
		}
		if res, ok := t.transfers.finish(h.seq, src, body[0] == ackOK); ok {
			t.reportTransfer(res)
		}
	case kindProbe:
		if relayed {
			return // probes measure the direct route only
		}
		if l := t.link(src); l != nil {
			l.pushReply(h.seq)
		}
	case kindProbeReply:
		if relayed {
			return
		}
		live, err := decodeLiveSet(body)
		if err != nil {
			t.stats.malformed.Add(1)
			return
		}
		if l := t.link(src); l != nil && l.onProbeReply(h.seq, time.Now(), live) {
			t.logger.Info("peer reachable directly", "to", src.String())
			signal(t.changec)
		}
	case kindRelay:
		t.handleRelay(ra, src, frame, body, relayed)
	}
}

// handleRelay either unwraps a relay meant for us or forwards it, direct
// only, to its destination.
func (t *Transport) handleRelay(ra *reassembler, src mesh.PeerName, frame, body []byte, relayed bool) {
	if relayed {
		t.stats.malformed.Add(1)
		return
	}
	origin, dst, inner, _, err := decodeRelay(body)
	if err != nil {
		t.stats.malformed.Add(1)
		return
	}
	if dst == t.name {
		// The last hop: src is the relay, the frame speaks for origin.
		t.handleFrame(ra, origin, inner, true)
		return
	}
	if origin != src {
		// Only the origin may ask us to relay.
		t.stats.malformed.Add(1)
		return
	}
	l := t.link(dst)
	if l == nil || l.route.Load().dead || !l.pushForward(frame) {
		t.stats.relayDropped.Add(1)
	}
}

// deliverBatch steps every message of a raft batch into the handler.
func (t *Transport) deliverBatch(h header, body []byte) {
	if own := t.ownRaft.Load(); own != 0 && h.to != own {
		t.stats.misaddressed.Add(1)
		return
	}
	hd := t.currentHandler()
	for len(body) > 0 {
		enc, rest, err := nextRaftMsg(body)
		if err != nil {
			t.stats.malformed.Add(1)
			return
		}
		body = rest
		if hd == nil {
			t.stats.droppedNoHandler.Add(1)
			continue
		}
		m, err := raftwire.Unmarshal(enc)
		if err != nil || m.GetTo() != h.to {
			t.stats.malformed.Add(1)
			continue
		}
		t.stats.received.Add(1)
		hd.Step(m)
	}
}

// handleChunk stores a chunk and, when its transfer completes, delivers the
// message and acknowledges it to the origin.
func (t *Transport) handleChunk(ra *reassembler, src mesh.PeerName, h header, body []byte) {
	ch, data, err := decodeChunk(body)
	if err != nil {
		t.stats.malformed.Add(1)
		return
	}
	t.stats.chunksReceived.Add(1)
	if own := t.ownRaft.Load(); own != 0 && h.to != own {
		t.stats.misaddressed.Add(1)
		return
	}
	hd := t.currentHandler()
	if hd == nil {
		// Neither stored nor acknowledged: the sender times out and raft
		// retries once we have a handler.
		t.stats.droppedNoHandler.Add(1)
		return
	}
	key := transferKey{origin: src, id: h.seq}
	payload, outcome := ra.add(key, ch, data, time.Now())
	status := byte(ackOK)
	switch outcome {
	case addPending:
		return
	case addDuplicate:
	case addRejected:
		status = ackRejected
	case addComplete:
		m, err := raftwire.Unmarshal(payload)
		if err != nil || m.GetTo() != h.to {
			t.stats.malformed.Add(1)
			status = ackRejected
			break
		}
		t.stats.received.Add(1)
		hd.Step(m)
	}
	if l := t.link(src); l != nil {
		l.pushAck(ackItem{id: h.seq, status: status, raftTo: h.from})
	}
}
