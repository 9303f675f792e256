package meshtransport

import (
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/internal/raftwire"
)

// header builds a frame header from us to a raft id.
func (t *Transport) header(k frameKind, to MemberID, seq uint64) header {
	return header{kind: k, cluster: t.clusterID.Load(), from: uint64(t.id.RaftID()), to: uint64(to), seq: seq}
}

// Send hands raft messages to their destinations and returns at once; it
// never blocks. Messages for a peer with a link are framed and queued on
// the link here; the rest go to the peer's sender (the relayed path, and
// chunked transfers of snapshots and large messages). A message whose
// destination is unknown, whose queue is full, or that cannot be encoded is
// dropped, counted and reported unreachable (a MsgSnap also as a failed
// snapshot); reports come from another goroutine.
func (t *Transport) Send(msgs []*raftpb.Message) {
	if t.closed.Load() {
		t.stats.drops[dropClosed].Add(uint64(len(msgs)))
		return
	}
	byID := *t.byID.Load()
	// Direct batches, one per destination, in order of first appearance.
	var batches []directBatch
	for _, m := range msgs {
		p := byID[MemberID(m.GetTo())]
		if p == nil {
			t.drop(m, dropUnknownMember)
			continue
		}
		size := raftwire.Size(m)
		if m.GetType() == raftpb.MsgSnap || size > ChunkSize {
			if !p.out.pushTransfer(m) {
				t.drop(m, dropQueueFull)
			}
			continue
		}
		if !p.linkUp.Load() || p.out.queued() {
			if !p.out.push(m) {
				t.drop(m, dropQueueFull)
			}
			continue
		}
		i := 0
		for i < len(batches) && batches[i].p != p {
			i++
		}
		if i == len(batches) {
			batches = append(batches, directBatch{p: p})
		}
		b := &batches[i]
		if b.count > 0 && len(b.frame)+raftEncodedLen(size) > MaxFrame {
			t.flushDirect(b)
		}
		if b.count == 0 {
			b.frame = appendHeader(make([]byte, 0, headerLen+raftEncodedLen(size)+256), t.header(kindRaft, p.id, 0))
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
	for i := range batches {
		t.flushDirect(&batches[i])
	}
}

type directBatch struct {
	p     *peer
	frame []byte
	count int
	msgs  []*raftpb.Message
}

// flushDirect queues a batch on its link, or hands its messages to the
// sender when the link refuses it (gone, or its queue full).
func (t *Transport) flushDirect(b *directBatch) {
	if b.count == 0 {
		return
	}
	p := b.p
	if t.links.Send(p.key, b.frame) {
		t.countSent(p, b.count, false)
		p.stats.bytesDirect.Add(uint64(len(b.frame)))
		t.stats.bytesDirect.Add(uint64(len(b.frame)))
	} else if !p.out.push(b.msgs...) {
		for _, m := range b.msgs {
			t.drop(m, dropQueueFull)
		}
	}
	b.frame, b.count, b.msgs = nil, 0, nil
}

// drop counts a raft message that will not be sent and tells raft.
func (t *Transport) drop(m *raftpb.Message, why dropReason) {
	t.stats.drops[why].Add(1)
	if m.GetType() == raftpb.MsgSnap {
		t.stats.snapshotsFailed.Add(1)
		t.reports.snapshot(m.GetTo(), raft.SnapshotFailure)
	}
	t.reports.unreachable(m.GetTo())
}

// sendControl sends a control frame to p: on its link if up, else through
// its sender over the router. It never blocks; false means it was dropped.
func (t *Transport) sendControl(p *peer, frame []byte) bool {
	if p.linkUp.Load() && t.links.Send(p.key, frame) {
		p.stats.bytesDirect.Add(uint64(len(frame)))
		t.stats.bytesDirect.Add(uint64(len(frame)))
		return true
	}
	return p.out.pushCtrl(frame)
}
