package meshtransport

import "sync/atomic"

// Stats are counters since New. Messages are raft messages; frames are
// unicasts handed to mesh.
type Stats struct {
	Sent     uint64 // raft messages handed to mesh in batches (direct or detoured)
	Unicasts uint64 // frames of every kind handed to mesh
	Received uint64 // raft messages stepped into the handler

	DroppedQueueFull uint64 // destination queue full
	DroppedNoRoute   uint64 // unknown raft id, or mesh refused the send
	Suspect          uint64 // sent the direct way although probes call the route dead and no detour exists
	DroppedEncode    uint64 // could not be marshalled, or larger than MaxTransfer
	DroppedClosed    uint64 // Send after Close
	DroppedNoHandler uint64 // inbound raft traffic before SetHandler
	DroppedInbound   uint64 // inbound queue full
	Malformed        uint64 // undecodable frames or gossip
	Misaddressed     uint64 // frames for another raft id than ours

	Detoured       uint64 // raft messages we sent through a relay
	DetouredChunks uint64 // chunks we sent through a relay
	Relayed        uint64 // frames we forwarded for other peers
	RelayDropped   uint64 // relay requests we could not forward

	ChunksSent         uint64
	ChunksReceived     uint64
	SnapshotsSent      uint64 // MsgSnap transfers acknowledged by the receiver
	TransfersFailed    uint64 // chunked transfers reported as failed
	TransfersAbandoned uint64 // incomplete inbound transfers dropped after the timeout

	ProbesSent     uint64
	ProbeReplies   uint64 // replies we sent
	ForeignCluster uint64 // frames dropped for carrying another cluster id
}

// Dropped is the total of outbound raft messages dropped.
func (s Stats) Dropped() uint64 {
	return s.DroppedQueueFull + s.DroppedNoRoute + s.DroppedEncode + s.DroppedClosed
}

type counters struct {
	sent, unicasts, received                                                       atomic.Uint64
	droppedQueueFull, droppedNoRoute, droppedEncode, droppedClosed                 atomic.Uint64
	droppedNoHandler, droppedInbound, malformed, misaddressed                      atomic.Uint64
	detoured, detouredChunks, relayed, relayDropped                                atomic.Uint64
	chunksSent, chunksReceived, snapshotsSent, transfersFailed, transfersAbandoned atomic.Uint64
	probesSent, probeReplies, foreignCluster, suspect                              atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (t *Transport) Stats() Stats {
	c := &t.stats
	return Stats{
		Sent:               c.sent.Load(),
		Unicasts:           c.unicasts.Load(),
		Received:           c.received.Load(),
		DroppedQueueFull:   c.droppedQueueFull.Load(),
		DroppedNoRoute:     c.droppedNoRoute.Load(),
		Suspect:            c.suspect.Load(),
		DroppedEncode:      c.droppedEncode.Load(),
		DroppedClosed:      c.droppedClosed.Load(),
		DroppedNoHandler:   c.droppedNoHandler.Load(),
		DroppedInbound:     c.droppedInbound.Load(),
		Malformed:          c.malformed.Load() + t.meta.malformed.Load(),
		Misaddressed:       c.misaddressed.Load(),
		Detoured:           c.detoured.Load(),
		DetouredChunks:     c.detouredChunks.Load(),
		Relayed:            c.relayed.Load(),
		RelayDropped:       c.relayDropped.Load(),
		ChunksSent:         c.chunksSent.Load(),
		ChunksReceived:     c.chunksReceived.Load(),
		SnapshotsSent:      c.snapshotsSent.Load(),
		TransfersFailed:    c.transfersFailed.Load(),
		TransfersAbandoned: c.transfersAbandoned.Load(),
		ProbesSent:         c.probesSent.Load(),
		ProbeReplies:       c.probeReplies.Load(),
		ForeignCluster:     c.foreignCluster.Load(),
	}
}
