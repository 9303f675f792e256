// Package peerlink keeps one authenticated, encrypted TCP connection (a
// link) between each pair of meshkv nodes, and carries two channels on it:
// datagrams (for raft traffic) and byte streams (for splicing mesh's own
// protocol, so that every socket crossing the network is ours).
//
// # Contract
//
// New checks a Config and builds a Node; Start binds Config.ListenAddr (""
// means dial only) and starts the goroutines; Close tells every peer,
// closes every link (calling Handler.OnLinkDown for each) and waits for all
// goroutines. SetTargets gives the addresses to keep links to; the Node
// dials a target while no link to the key last seen there is up. Links are
// per peer key: at most one is live per peer, whoever dialled.
//
// Send(peer, data) never blocks. It queues data on the peer's link and
// returns false when there is no link, the link's queue is full
// (Config.SendQueue datagrams or SendQueueBytes bytes, counting queued and
// unacknowledged ones) or data is too large. Datagrams arrive at the peer's
// Handler.OnDatagram in order and at most once per link. The receiver
// acknowledges cumulatively: the acknowledgement rides on its own DATA
// records, or on a coalesced ACK record (one per 16 datagrams, or on the
// next batch or clock tick) when there is no reverse traffic. When a link
// goes down, the datagrams it still holds (queued, or sent and not
// acknowledged) are handed back in Handler.OnLinkDown so the layer above
// can send them another way; an unacknowledged one may have been delivered,
// so such a re-send may duplicate it.
//
// OpenStream(peer) opens a Stream on the peer's link; the peer's Handler
// gets it in OnStream. A Stream is an ordered, reliable byte stream with
// credit-based flow control: Write blocks while the peer's window
// (Config.StreamWindow) is full, and the receiver grants credit as its
// reader consumes, so neither side buffers more than a window per stream.
// Streams end when either side closes them or the link goes down.
//
// Handler methods must not block: they run on the link's reader goroutine,
// and a slow handler stalls that link (and, for OnLinkUp/OnLinkDown, the
// replacement of links to that peer). They may call Send and OpenStream.
// For each peer OnLinkUp and OnLinkDown alternate, starting with OnLinkUp.
//
// # Liveness
//
// Every link pings every PingInterval; any record received counts as proof
// of life, and pongs give a round-trip estimate. After a silence longer than
// the link's threshold the link is declared dead and closed at once (no
// waiting for TCP) with a reset, which reaches the peer at once when only
// our direction is cut (a FIN would wait behind unacknowledged data); its
// datagrams are handed back, and every target where that peer was seen is
// redialled at once and then every RedialInterval. Each
// attempt is a fresh connection (TCP connect bounded by 2*RedialInterval,
// the whole attempt by DialTimeout, at most three in flight per target), so
// while a path is silently dead a new SYN goes out about every
// RedialInterval and a healed path is found within about that long.
// Targets that have failed for longer than BackoffAfter, or that refuse us,
// are retried with a doubling interval up to RedialMax.
//
// The threshold starts at DeadAfter and adapts upwards, up to DeadAfterMax:
// to 1.5 times the largest recent gap between arrivals plus the round trip
// (so a peer whose records come late under load is given that slack; the
// remembered gap halves every 30s), and by a penalty that doubles each time
// a link to the peer is declared dead within 2s of coming up or a new link
// comes up within 2s of a dead verdict, ours or the peer's (which we see as
// a lost connection): the verdict was likely wrong. The penalty halves
// every 30s, and a link that replaces a duplicate keeps the replaced link's
// history. So a starved machine does not flap several
// times a second. Two guards keep our own slowness from looking like the
// path's: a clock tick that comes late (our process was not scheduled)
// gives no verdict, and a verdict is withheld while the kernel holds
// received bytes our reader has not read yet (Linux). The decisions are the
// pure state machines in liveness.go, driven by the clock goroutine.
//
// Sockets: TCP_NODELAY; on Linux TCP_USER_TIMEOUT of max(DeadAfterMax,
// WriteTimeout), so the kernel never retries a silent path for minutes; a
// deadline on every write (WriteTimeout). Small records queued together
// go out in one write.
//
// # Identity and admission
//
// Each process has an Identity, an Ed25519 key pair made at start and kept
// in memory; a peer is known by its PublicKey. Links use TLS 1.3 (ALPN
// "meshkv-peer/1") with mutual authentication: every node presents one
// self-contained X.509 certificate for its key (no names; NotBefore an hour
// ago, NotAfter 9999; dates are never checked, so clock skew cannot lock
// anyone out). Session resumption is off: every connection proves its keys.
//
// With a cluster secret (NewClusterSecret, from the bytes of a password
// file), the secret is stretched with Argon2id and HKDF-SHA256 (info
// "meshkv peerlink cluster CA v1") derives a deterministic Ed25519 cluster
// CA key; every node signs its own certificate with it. A peer is admitted
// only with exactly one certificate, holding an Ed25519 key, carrying a
// PureEd25519 signature by the CA over its TBSCertificate (checked
// directly, not through chain building). TLS's CertificateVerify proves the
// peer holds the certificate's key. Without a secret (insecure mode) any
// Ed25519 certificate is admitted.
//
// After TLS both sides exchange a Hello (at most 1 KiB: protocol version,
// cluster name, advertised address, link nonce, limits, Config.AppHello),
// then call Config.Authorize(PeerInfo). A different cluster name or a
// refusal closes the link with a CLOSE record carrying the reason; both
// sides log it at warn. Each side sends READY once it accepted the peer,
// and the link is up only when both READYs are in. Whoever sends a CLOSE
// half-closes and waits briefly for the peer to close too, so the record is
// not destroyed by a reset.
//
// Duplicate links (both sides dialled, or a peer reached at two addresses)
// are resolved the same way on both ends: the link dialled by the smaller
// key stays (then the smaller dialler-chosen nonce); the other is closed
// with a CLOSE saying why. A link to ourselves is dropped and its address is
// never dialled again.
//
// # Threat model
//
// Anyone may reach the listening port. Without the secret an attacker
// cannot join: it cannot make a certificate that verifies against the CA
// key, so it fails in the TLS handshake and never reaches the Hello, the
// datagrams or the streams. It cannot read or alter links (TLS 1.3). It can
// spend our resources only within the pre-authentication bounds below. Every
// node's certificate (signed by the CA key) is handed to anyone who
// connects, which lets an attacker test password guesses offline; the
// Argon2id stretching makes each guess cost tens of milliseconds and about
// 20 MiB, but only a long random secret (as from a password file) is safe:
// New warns below 16 bytes.
//
// Every holder of the secret is a full member: it can admit new keys
// (sign certificates) and cannot be revoked except by changing the secret
// everywhere. A member still speaks only for its own key: it cannot claim
// another member's identity, since TLS proves possession of the key; the
// layer above derives raft ids and mesh names from keys. Fields of the
// Hello (cluster name, advertised address, app bytes) are the member's own
// claims. In insecure mode everyone who reaches the port is a member in
// this sense: links are still encrypted and keys still proven, but nothing
// keeps strangers out, and a man in the middle can place itself between
// two nodes under its own key (not theirs).
//
// # Bounds before authentication
//
// Per source (an IPv4 address or IPv6 /64): at most SourceHandshakes
// concurrent handshakes (default 4) and a token bucket of SourceRate
// connections per second (default 20, burst 40); overall at most
// MaxHandshakes (default 64). A connection over a limit is reset at once
// without reading. A handshake must finish within HandshakeTimeout (3s).
// crypto/tls bounds handshake messages (64 KiB; 256 KiB for certificates),
// and our Hello is read only after TLS and is at most 1 KiB, so the heap
// per pending connection is small (see TestPreAuthMemory), and one source
// cannot lock others out (TestFloodFromOneSourceDoesNotLockOut). Many
// sources together can still exhaust MaxHandshakes while they keep it full.
//
// After authentication every record's length is checked against its type's
// limit before anything is allocated (DATA: Config.MaxDatagram plus a few
// bytes), queues are bounded, streams are bounded by their windows and
// Config.MaxStreams, and a peer that violates the protocol is disconnected.
//
// # Goroutines
//
//   - accept: owns the listener; admits or resets each connection and
//     starts a handshake goroutine for the admitted ones.
//   - clock: ticks every PingInterval/2; owns the dial plan's schedule and
//     drives every link's liveness (pings, acknowledgement flushes, dead
//     verdicts), starts dial goroutines, prunes the admission tables.
//   - one per handshake (inbound or dial): TLS, Hello, Authorize; on success
//     it registers the link and becomes its reader.
//   - per link, reader: owns the read side, calls the Handler, and tears the
//     link down (hand-back, OnLinkDown).
//   - per link, writer: the only goroutine writing to the connection; it
//     batches everything pending into as few writes as possible.
//
// Close stops all of them.
//
// # Defaults
//
// MaxDatagram 1 MiB, SendQueue 4096 datagrams / 32 MiB, StreamWindow 4 MiB,
// MaxStreams 4, PingInterval 50ms, DeadAfter 250ms..DeadAfterMax 2s,
// RedialInterval 100ms (RedialMax 5s after BackoffAfter 1m), DialTimeout
// 500ms, HandshakeTimeout 3s, WriteTimeout 2s.
//
// # Wire format
//
// Records inside TLS: a type byte, a 4-byte big-endian length, a body; see
// record.go. The decoders of everything read from the network have fuzz
// tests; `go test -run Fuzz` runs their seed corpora, and for example
//
//	go test ./internal/peerlink -run '^$' -fuzz FuzzReadRecord -fuzztime 30s
//
// explores one of them.
//
// # Example
//
//	id, _ := peerlink.NewIdentity()
//	secret, err := peerlink.NewClusterSecret(passwordFileBytes)
//	if err != nil {
//		return err
//	}
//	n, err := peerlink.New(peerlink.Config{
//		ListenAddr:    "10.0.0.1:2380",
//		Identity:      id,
//		ClusterSecret: secret,
//		ClusterName:   "locks",
//		Handler:       h, // OnLinkUp, OnDatagram, OnStream, OnLinkDown
//		Logger:        log,
//	})
//	if err != nil {
//		return err
//	}
//	if err := n.Start(); err != nil {
//		return err
//	}
//	defer n.Close()
//	_ = n.SetTargets([]string{"10.0.0.2:2380", "10.0.0.3:2380"})
//	ok := n.Send(peerKey, frame) // false: no link or queue full
package peerlink
