package meshtransport

import (
	"slices"
	"sync/atomic"
	"time"
)

// dropReason says why a message or frame was dropped.
type dropReason int

const (
	dropUnknownMember   dropReason = iota // outbound raft message to a raft id we do not know
	dropNoRoute                           // no link and no route through the mesh
	dropQueueFull                         // the destination's queue is full
	dropEncode                            // could not be encoded, or too large
	dropClosed                            // Send after Close
	dropNoHandler                         // inbound raft traffic before SetHandler
	dropInboundFull                       // the inbound queue is full
	dropMalformed                         // undecodable frame
	dropSpoofed                           // a sender or message From that is not the authenticated peer
	dropMisaddressed                      // a frame or message for another raft id than ours
	dropForeignCluster                    // a frame of another cluster id
	dropUnknownOrigin                     // a sealed frame from a key we hold no sealing key for
	dropBadSeal                           // a sealed frame that does not authenticate
	dropReplay                            // a sealed frame seen before, or older than the window
	dropBadSealKey                        // a peer's sealing key is unusable
	dropTransferRefused                   // a chunk refused by reassembly (bound or inconsistency)
	dropMemberQueueFull                   // a membership message nobody read in time
	dropTooManyPeers                      // a peer beyond MaxPeers
	numDropReasons
)

var dropNames = [numDropReasons]string{
	"unknown-member", "no-route", "queue-full", "encode", "closed", "no-handler", "inbound-full",
	"malformed", "spoofed", "misaddressed", "foreign-cluster", "unknown-origin", "bad-seal", "replay",
	"bad-seal-key", "transfer-refused", "member-queue-full", "too-many-peers",
}

func (r dropReason) String() string { return dropNames[r] }

// counters are the transport's totals; per-peer ones live in peerCounters.
type counters struct {
	drops [numDropReasons]atomic.Uint64

	sentDirect, sentRelayed         atomic.Uint64 // raft messages
	bytesDirect, bytesRelayed       atomic.Uint64 // frame bytes (sealed bytes on the mesh)
	received, receivedRelayed       atomic.Uint64 // raft messages stepped
	bytesReceived                   atomic.Uint64
	resent                          atomic.Uint64 // datagrams a dead link handed back, re-sent over the mesh
	chunksSent, chunksReceived      atomic.Uint64
	chunksSentRelayed               atomic.Uint64
	snapshotsSent, snapshotsFailed  atomic.Uint64
	snapshotsReceived               atomic.Uint64
	transfersAbandoned              atomic.Uint64
	reassemblyHeld                  atomic.Int64 // gauge: bytes held by incomplete inbound transfers
	probesSent, probeReplies        atomic.Uint64
	memberSent, memberReceived      atomic.Uint64
	pathSwitches                    atomic.Uint64
	suspect                         atomic.Uint64 // sent over the mesh to a peer whose path is dead
	gossipMalformed, gossipForged   atomic.Uint64
	refusedLinks                    atomic.Uint64 // links our Authorize refused
	unreachableReports, snapReports atomic.Uint64
}

// Stats is a snapshot of the transport's counters, for metrics. Reading it
// costs a few atomic loads per counter and a lock per peer.
type Stats struct {
	// Raft messages sent on a link (Direct) and sealed over the mesh
	// (Relayed), with their frame bytes.
	SentDirect, SentRelayed   uint64
	BytesDirect, BytesRelayed uint64
	// Raft messages stepped into the handler, of which over the mesh.
	Received, ReceivedRelayed uint64
	BytesReceived             uint64
	// Resent counts datagrams a dead link handed back that were re-sent
	// over the mesh.
	Resent uint64
	// Suspect counts raft messages sent over the mesh to a peer whose path
	// is dead (the mesh still had a route).
	Suspect uint64

	ChunksSent, ChunksReceived uint64
	ChunksSentRelayed          uint64 // of ChunksSent, sealed over the mesh
	SnapshotsSent              uint64 // MsgSnap transfers the receiver acknowledged
	SnapshotsFailed            uint64 // MsgSnap transfers reported failed to raft
	SnapshotsReceived          uint64
	TransfersAbandoned         uint64 // incomplete inbound transfers dropped after the timeout
	ReassemblyBytes            int64  // gauge: bytes held by incomplete inbound transfers

	ProbesSent, ProbeReplies      uint64
	MemberSent, MemberReceived    uint64 // membership messages
	PathSwitches                  uint64
	GossipMalformed, GossipForged uint64
	RefusedLinks                  uint64 // links refused by our checks after the handshake

	// Drops counts dropped messages and frames by reason (see the reason
	// names in the package doc).
	Drops map[string]uint64

	// Links are the link layer's counters: handshake failures by reason
	// (Links.HandshakeFailures), admission rejections, dead verdicts.
	Links LinkStats
	// Router is the relay layer's: connections, splices, bytes relayed
	// for other peers.
	Router RouterStats

	// Peers has one row per peer, ordered by raft id.
	Peers []PeerStats
}

// LinkStats are the link layer's counters (see peerlink.Stats).
type LinkStats struct {
	HandshakesOK      uint64
	HandshakeFailures map[string]uint64
	RejectedRate      uint64
	RejectedSource    uint64
	RejectedGlobal    uint64
	LinksUp           uint64
	LinksDown         uint64
	DeadVerdicts      uint64
	ProtocolErrors    uint64
	DatagramsReturned uint64
	BytesSent         uint64
	BytesReceived     uint64
}

// PeerStats are one peer's numbers.
type PeerStats struct {
	ID   MemberID
	Name PeerName
	Path Path
	// RTT is the link's ping round trip when direct, else the newest
	// answered probe's.
	RTT                       time.Duration
	MsgsDirect, BytesDirect   uint64
	MsgsRelayed, BytesRelayed uint64
	MsgsIn, MsgsInRelayed     uint64
	BytesIn                   uint64
	PathSwitches              uint64
}

// Dropped is the total of outbound raft messages dropped.
func (s Stats) Dropped() uint64 {
	var n uint64
	for _, r := range []dropReason{dropUnknownMember, dropNoRoute, dropQueueFull, dropEncode, dropClosed} {
		n += s.Drops[r.String()]
	}
	return n
}

// Stats returns a snapshot of the counters.
func (t *Transport) Stats() Stats {
	c := &t.stats
	s := Stats{
		SentDirect:         c.sentDirect.Load(),
		SentRelayed:        c.sentRelayed.Load(),
		BytesDirect:        c.bytesDirect.Load(),
		BytesRelayed:       c.bytesRelayed.Load(),
		Received:           c.received.Load(),
		ReceivedRelayed:    c.receivedRelayed.Load(),
		BytesReceived:      c.bytesReceived.Load(),
		Resent:             c.resent.Load(),
		Suspect:            c.suspect.Load(),
		ChunksSent:         c.chunksSent.Load(),
		ChunksSentRelayed:  c.chunksSentRelayed.Load(),
		ChunksReceived:     c.chunksReceived.Load(),
		SnapshotsSent:      c.snapshotsSent.Load(),
		SnapshotsFailed:    c.snapshotsFailed.Load(),
		SnapshotsReceived:  c.snapshotsReceived.Load(),
		TransfersAbandoned: c.transfersAbandoned.Load(),
		ReassemblyBytes:    c.reassemblyHeld.Load(),
		ProbesSent:         c.probesSent.Load(),
		ProbeReplies:       c.probeReplies.Load(),
		MemberSent:         c.memberSent.Load(),
		MemberReceived:     c.memberReceived.Load(),
		PathSwitches:       c.pathSwitches.Load(),
		GossipMalformed:    t.gossip.malformed.Load(),
		GossipForged:       t.gossip.forged.Load(),
		RefusedLinks:       c.refusedLinks.Load(),
		Drops:              make(map[string]uint64, numDropReasons),
		Router:             t.router.Stats(),
	}
	for r := range numDropReasons {
		if v := c.drops[r].Load(); v > 0 {
			s.Drops[r.String()] = v
		}
	}
	ls := t.links.Stats()
	s.Links = LinkStats{
		HandshakesOK:      ls.HandshakesOK,
		HandshakeFailures: ls.HandshakeFailures,
		RejectedRate:      ls.RejectedRate,
		RejectedSource:    ls.RejectedSource,
		RejectedGlobal:    ls.RejectedGlobal,
		LinksUp:           ls.LinksUp,
		LinksDown:         ls.LinksDown,
		DeadVerdicts:      ls.DeadVerdicts,
		ProtocolErrors:    ls.ProtocolErrors,
		DatagramsReturned: ls.DatagramsReturned,
		BytesSent:         ls.BytesSent,
		BytesReceived:     ls.BytesReceived,
	}
	for _, p := range t.peerList() {
		pc := &p.stats
		p.mu.Lock()
		rtt := p.ps.rtt
		if p.ps.link {
			rtt = p.linkRTT
		}
		path := p.ps.path
		p.mu.Unlock()
		s.Peers = append(s.Peers, PeerStats{
			ID: p.id, Name: p.name, Path: path, RTT: rtt,
			MsgsDirect: pc.msgsDirect.Load(), BytesDirect: pc.bytesDirect.Load(),
			MsgsRelayed: pc.msgsRelayed.Load(), BytesRelayed: pc.bytesRelayed.Load(),
			MsgsIn: pc.msgsIn.Load(), MsgsInRelayed: pc.msgsInRelayed.Load(), BytesIn: pc.bytesIn.Load(),
			PathSwitches: pc.pathSwitches.Load(),
		})
	}
	slices.SortFunc(s.Peers, func(a, b PeerStats) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return s
}
