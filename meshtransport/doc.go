// Package meshtransport carries raft messages, membership messages and
// signed node metadata between meshkv nodes. Every message it delivers is
// attributable: it arrives with the raft id of the key that sent it, and
// raft messages claiming any other sender never reach raft.
//
// # Shape
//
//	raftadapter ──Send/Step──> Transport ─┬─ peer links (internal/peerlink): one TLS 1.3 link per
//	                                      │  pair of nodes on Config.ListenAddr. Datagrams carry the
//	                                      │  direct path; streams carry the mesh router's connections.
//	                                      └─ a mesh.Router on 127.0.0.1:<random>, no password, no
//	                                         discovery; its only connections are splices of link
//	                                         streams. It carries signed gossip, topology, and sealed
//	                                         unicasts to nodes we have no link to, through any number
//	                                         of other nodes.
//
// # Identity
//
// Each process has an Identity: an Ed25519 key (its links prove it in TLS;
// its gossip entries are signed with it) and an X25519 key for sealing.
// Both live in memory. The raft id and the mesh peer name are hashes of the
// Ed25519 key (identity.go is the one place of that mapping), so nobody
// can claim another node's id or name without its private key.
//
// # Contract
//
// New checks a Config and builds a Transport (deriving the cluster secret
// from Config.Password); Start binds the link listener and the router's
// loopback port (ErrBind, never a panic), starts both, and keeps links to
// Config.Peers plus, with discovery, the advertised addresses of the live
// gossip entries of our cluster; Close stops everything it can (see
// Goroutines).
//
// Send never blocks and never calls back. A message for a peer with a link
// is framed and queued on the link at once; anything else (no link, the
// link's queue full, snapshots and messages over ChunkSize) goes to the
// peer's sender goroutine. A message is dropped, counted by reason and
// reported unreachable (a MsgSnap also as a failed snapshot) when its raft
// id is unknown, its queue is full, or there is neither a link nor a route.
// Reports are made from the reporter goroutine. After a MsgSnap the Handler
// hears ReportSnapshot(SnapshotFinish) only once the receiver delivered the
// whole snapshot, and SnapshotFailure on rejection or when no progress was
// acknowledged for SnapshotTimeout.
//
// Inbound raft messages reach Handler.Step (which must not block) only
// after these checks, for direct and relayed traffic alike: the frame's
// sender field and every raftpb.Message.From equal the raft id of the key
// that the link or the seal proved; the receiver field and every To are
// ours; the cluster id is ours (or either is 0). Violations are dropped,
// counted (Stats.Drops "spoofed", "misaddressed", "foreign-cluster") and
// logged at most every 10 seconds per peer. raftadapter then applies its
// own checks of what raft would act on wrongly (see raftadapter's
// admitInbound).
//
// Delivery is best effort, as raft expects: messages may be lost or
// reordered when a path changes, and a message a dying link had sent but
// not seen acknowledged may arrive twice (once on the link, once re-sent
// over the mesh). Sealed frames are never delivered twice.
//
// # Paths
//
// A peer's Path is direct while a link to it is up: peerlink owns link
// liveness (pings every 50ms, dead after 250ms of silence, adapting upwards
// for slow or flapping peers; a fresh TCP connection per redial, so a
// healed cut is found within about 100ms and no retransmission backoff is
// ever waited out). When a link dies, peerlink hands back what the peer had
// not acknowledged; the router's connection over that link is closed at
// once, mesh removes it from its routes, and the sender re-sends the
// handed-back frames sealed over the mesh as soon as the route to the peer
// no longer goes through the dead link (at most 200ms later).
//
// Without a link the path is relayed while the mesh has a route and the
// peer answers sealed probes (every ProbeInterval), and dead after
// ProbeFailures unanswered probes in a row, or after a grace period with no
// route at all. A link that just died leaves the peer relayed at once; one
// answered probe revives a dead peer. Ticks that come late (our process was
// not scheduled) give no verdict, so a starved machine does not flap. The
// decisions are the pure state machine in path.go. Frames for a dead peer
// still go over the mesh if it has a route (the probes may be wrong), and
// raft hears that the peer is unreachable.
//
// Peers lists each node with its path, round trip, the time of its last
// gossip refresh and expiry, and the raft ids it says it cannot reach.
//
// # Membership messages
//
// RemovalNotice, MemberQuery, MemberReply and JoinRequest are frames sent to
// one node (SendMember) and delivered attributed to their sender's key
// (MemberMessages); gossip never carries them. The transport gives them no
// meaning.
//
// # Goroutines
//
//   - monitor: owns path decisions of peers without a link (route checks,
//     probes, verdicts), keeps peers and dial targets in step with the
//     gossip, re-signs our entry every RefreshInterval (and when our
//     unreachable set changes), expires entries and forgets peers, and
//     reports configured peers we have no link to.
//   - inbound: opens sealed envelopes (replay windows), reassembles chunked
//     transfers, and handles every frame that is not a raft batch from a
//     link. The router's callbacks and the link readers only queue for it
//     (bounded; overflow is dropped and counted).
//   - one sender per peer: the only goroutine that may block (a router
//     write blocks until the first hop takes it, at worst until that hop's
//     link dies); it sends over the mesh, runs chunked transfers, and
//     re-sends what a dead link handed back.
//   - reporter: calls the Handler's Report methods.
//   - the link layer's and the router's own goroutines; the router's
//     splices (two copiers each).
//
// Close stops all of ours and the link layer's. Mesh's listener and
// connection goroutines cannot be stopped (mesh has no API for it): they
// linger until the process exits, with no splice left to carry anything.
//
// # Wire formats
//
// Link hello app bytes: a version byte and the X25519 sealing key.
//
// Frames (a link datagram, or the plaintext of a sealed envelope): a
// 34-byte header (version, kind, cluster id, sender raft id, receiver raft
// id, sequence) and a body by kind: raft batch, chunk, chunk ack, probe,
// probe reply, removal notice, membership query, reply, join request.
// frame.go has the layout.
//
// Sealed envelopes (mesh unicasts): version, origin Ed25519 key, 24-byte
// random nonce, then XChaCha20-Poly1305 of { counter, frame } under a
// pairwise key (HKDF of the X25519 shared secret, salted with both Ed25519
// keys); the associated data binds the header, the destination's key and
// the cluster name. seal.go has the details.
//
// Gossip entries (mesh's metadata channel): the node's keys, a version,
// cluster name and id, advertised link address, nick name, client URLs,
// role, app state and unreachable set, signed with the node's key; a node
// takes an entry only if its signature verifies against the key it
// carries, files it under the name that key maps to, and only if its
// version is newer than what it holds or has tombstoned. entry.go and
// gossip.go have the details.
//
// Chunked transfers: ChunkSize chunks, at most 8 in flight beyond the
// receiver's in-order acknowledgement, going back to the first missing
// chunk on three duplicate acknowledgements or a second without progress.
// Reassembly is keyed by the authenticated origin: one transfer per origin
// (a newer one replaces it), chunks taken in order only, at most
// 2*MaxTransfer bytes held over all origins.
//
// Every decoder of network bytes has a fuzz test (fuzz_test.go); `go test`
// runs their seed corpora.
//
// # Threat model
//
// Anyone may reach ListenAddr. Without the cluster secret nothing gets past
// peerlink's TLS handshake (bounded per source before authentication; see
// peerlink). A holder of the secret links under its own key and is a
// member of the mesh: it can gossip its own entry, relay or drop what the
// mesh routes through it (mesh topology is self-declared, so it can draw
// routes through itself), and send raft messages under its own raft id. It
// cannot speak for another node: not on a link (the key is proven by TLS),
// not sealed (the origin is proven by the pairwise key), not in gossip
// (entries are signed), not as a relay (relays cannot read, forge or
// replay sealed frames; mesh's own source field is ignored). Reassembly
// and every queue are bounded per origin and overall. Without a Password
// (insecure mode) everyone who reaches the port holds the secret in this
// sense; Validate refuses that beyond loopback unless InsecureAllowAnyone
// is set, and Start logs a warning.
//
// The router's loopback port is reachable by local processes. The
// verifying overlay refuses every connection that is not a registered
// splice, or whose mesh name is not the one the link's key maps to, but
// only after mesh's handshake, and mesh accepts at most 20 connections per
// second: a local process can slow down splicing. Local processes are
// inside the trust boundary of that port; remote hosts cannot reach it.
//
// # Example
//
//	tr, err := meshtransport.New(meshtransport.Config{
//		ListenAddr:  "10.0.0.1:2380",
//		Peers:       []string{"10.0.0.2:2380", "10.0.0.3:2380"},
//		Password:    passwordFileBytes,
//		ClusterName: "locks",
//	})
//	if err != nil {
//		return err
//	}
//	if err := tr.Start(); err != nil {
//		return err
//	}
//	defer tr.Close()
//	id := tr.RaftID() // the raft id to run raft under
//	tr.SetMeta(meshtransport.Meta{ClientURLs: urls, Role: "voter"})
//	tr.SetHandler(raftNode) // Step, ReportUnreachable, ReportSnapshot
//	tr.Send(ready.Messages)
package meshtransport
