// Package meshtransport carries raft messages between meshkv nodes over a
// Weave Mesh network and gossips each node's metadata.
//
// # Contract
//
// A Transport owns one mesh router. New creates it and registers two gossip
// channels (frames and metadata); Start binds the listen address (returning
// ErrBind, never panicking), starts mesh, dials Config.Peers and starts the
// transport's goroutines; Close stops them.
//
// Send never blocks: it appends each message to the bounded queue of its
// destination and returns. A message is dropped, counted in Stats and
// reported to the Handler when its raft id is unknown, its queue is full, or
// its destination has neither a live route nor a detour. Reports
// (ReportUnreachable, ReportSnapshot) are always made from the transport's
// reporter goroutine, never from inside Send, so a raft loop may call Send
// while holding its own state. After a MsgSnap, the Handler hears
// ReportSnapshot(SnapshotFinish) only once the receiver acknowledged the
// whole snapshot, and SnapshotFailure on any loss or timeout.
//
// Inbound raft messages are passed to Handler.Step on the inbound goroutine,
// in arrival order per frame. Delivery is best effort, as raft expects:
// messages may be lost or reordered around route changes, never duplicated
// by the transport, never corrupted (chunks are checksummed).
//
// # Identity and metadata
//
// Each Transport picks a random 48-bit mesh peer name, so a restarted node is
// a new peer. Every node gossips a Meta (mesh GossipData, merged per peer by
// newest (incarnation, version)); the incarnation is random per process
// start. Each entry also carries the peer's mesh listen address when it
// names a specific host; with peer discovery on, the monitor dials the peers
// of our cluster that it is not connected to by that address (mesh's own
// discovery guesses our port). Meta.RaftID is the one place where raft ids
// map to mesh peers: Send resolves a raft id through the gossiped metadata
// and nothing else. Peers of another Config.ClusterName get no traffic from
// us. Every frame carries
// the cluster id; a frame whose id differs from ours (both non-zero) is
// dropped, counted and logged once per foreign id.
//
// # Goroutines
//
//   - monitor: owns the set of links (one per peer of our cluster name that
//     mesh knows), the raft id map, probe rounds, route decisions and the
//     expiry of unacknowledged outbound transfers.
//   - one sender per link: owns that link's encode buffers and is the only
//     goroutine that writes to the peer, so a mesh write that blocks (mesh
//     has no write deadline) stalls only that peer. It batches every queued
//     message into as few frames as fit in MaxFrame, and sends messages that
//     are MsgSnap or larger than ChunkSize as chunked transfers.
//   - inbound: owns chunk reassembly; handles every frame mesh hands to our
//     callback (raft batches, chunks, acks, probes, probe replies, relays).
//     Mesh's callbacks only check the header and queue the frame (bounded;
//     overflow is dropped and counted): they never block, send or fail.
//   - reporter: calls the Handler's Report methods.
//
// Close stops all of them. Mesh's own goroutines and listener cannot be
// stopped (Router.Stop does not stop them); they linger until the process
// exits and their callbacks into a closed Transport are ignored.
//
// # Wire envelope
//
// Each mesh unicast is one frame: a 34-byte header (format version, kind,
// cluster id, sender raft id, receiver raft id, sequence) and a body. Kinds:
// raft batch (length-prefixed protobuf-encoded raftpb.Messages), chunk
// (index, count, total length, crc32c of the chunk and of the whole payload),
// chunk ack, probe, probe reply (the replier's live set), and relay (origin
// peer, final destination peer, inner frame). envelope.go has the layout.
//
// # Liveness and detours
//
// Mesh notices a reset connection within about 100 ms but a silently dead
// one only after 30–60 s, or never. So every ProbeInterval the monitor opens
// a probe round for each link; the link's sender sends a numbered probe over
// mesh's route to the peer, and the reply (matched by number) carries the
// replier's live set. After ProbeFailures consecutive unanswered rounds
// (twice as many for a peer that has never answered, whose mesh route may
// still be forming) the peer's direct route is dead: messages for it are
// then wrapped in a relay frame and sent to a third peer that we probe live and whose newest reply
// lists the destination as live (the current relay is kept while it stays
// usable, else the lowest round trip wins). The relay forwards the inner
// frame on its own direct route only; a relayed frame is never relayed
// again. Probing of the direct route continues, and the first answered probe
// switches traffic back. With no detour, messages still go the direct way
// (the probes may be wrong when a starved CPU misses replies; dropping would
// cut raft off for sure) and the peer is reported unreachable to raft, which
// then probes it gently. Messages are routed to the relay's queue
// at Send time, so a sender stuck in a write to the dead peer does not hold
// them back.
//
// # Example
//
//	tr, err := meshtransport.New(meshtransport.Config{
//		ListenAddr:  "10.0.0.1:2380",
//		Peers:       []string{"10.0.0.2:2380", "10.0.0.3:2380"},
//		Password:    secret,
//		ClusterName: "locks",
//	})
//	if err != nil {
//		return err
//	}
//	if err := tr.Start(); err != nil {
//		return err
//	}
//	defer tr.Close()
//	tr.SetMeta(meshtransport.Meta{RaftID: id, ClientURLs: urls, Role: "voter"})
//	tr.SetHandler(node) // raftadapter.Node
//	tr.Send(ready.Messages)
package meshtransport
