package peerlink

import (
	"sync/atomic"
	"time"
)

// Handler receives what arrives on links. Its methods are called from link
// goroutines and must not block (hand the work to a queue of your own);
// they may call the Node's methods, including Send and OpenStream.
//
// For each peer, OnLinkUp and OnLinkDown alternate, starting with OnLinkUp;
// a replacement link's OnLinkUp comes after the old link's OnLinkDown.
// OnDatagram and OnStream for a link come between its OnLinkUp and
// OnLinkDown, in arrival order, on one goroutine.
type Handler interface {
	// OnLinkUp: a link to info.Key is authenticated, authorized by both
	// sides and ready. Send to the peer works from now on.
	OnLinkUp(info PeerInfo)
	// OnDatagram delivers one datagram. data belongs to the handler.
	OnDatagram(peer PublicKey, data []byte)
	// OnStream hands over a stream the peer opened. The handler owns it and
	// must Close it; reading and writing belong on goroutines of its own.
	OnStream(peer PublicKey, s *Stream)
	// OnLinkDown: the link is gone (reason wraps one of ErrDead,
	// ErrConnLost, ErrDuplicate, ErrPeerClosed, ErrProtocol, ErrShutdown).
	// undelivered are the datagrams handed to Send on this link that the
	// peer did not acknowledge, in Send order: queued ones and sent ones
	// whose acknowledgement did not arrive (these may have been delivered,
	// so a re-send on another path may duplicate them).
	OnLinkDown(peer PublicKey, reason error, undelivered [][]byte)
}

type nopHandler struct{}

func (nopHandler) OnLinkUp(PeerInfo)                     {}
func (nopHandler) OnDatagram(PublicKey, []byte)          {}
func (nopHandler) OnStream(_ PublicKey, s *Stream)       { _ = s.Close() }
func (nopHandler) OnLinkDown(PublicKey, error, [][]byte) {}

// PeerInfo describes the peer of a link. Key is proven by TLS (and, with a
// cluster secret, admitted by the cluster CA); every other field is the
// peer's own claim.
type PeerInfo struct {
	Key           PublicKey
	RemoteAddr    string // the address of the TCP connection
	AdvertiseAddr string // where the peer says it can be dialled; may be ""
	ClusterName   string
	App           []byte // the peer's Config.AppHello
	Dialled       bool   // we initiated the connection
	Version       int    // protocol version in use
}

// LinkInfo is a snapshot of one live link.
type LinkInfo struct {
	PeerInfo
	Since         time.Time     // when the link came up
	RTT           time.Duration // smoothed ping round trip; 0 before the first pong
	Threshold     time.Duration // current silence after which the link is dead
	InFlight      int           // datagrams queued or unacknowledged
	Streams       int           // open streams
	BytesSent     uint64        // record bytes written (before TLS)
	BytesReceived uint64        // record bytes read (after TLS)
	Closing       bool
}

// Stats are counters since New.
type Stats struct {
	HandshakesOK      uint64
	HandshakeFailures map[string]uint64 // by reason: timeout, not-tls, certificate, tls, hello, cluster, unauthorized, self, conn, closed
	HandshakesNow     int               // inbound handshakes in flight

	RejectedRate   uint64 // inbound connections over their source's rate
	RejectedSource uint64 // over the per-source concurrent handshake cap
	RejectedGlobal uint64 // over the global cap (or too many sources tracked)

	Dials       uint64 // outbound attempts started
	DialsFailed uint64 // outbound attempts that ended without a link

	LinksUp        uint64
	LinksDown      uint64
	Duplicates     uint64 // links closed by duplicate resolution
	DeadVerdicts   uint64 // links declared dead by liveness
	ProtocolErrors uint64 // links closed for a protocol violation by the peer

	DatagramsSent     uint64 // accepted by Send
	DatagramsRefused  uint64 // refused by Send (no link, full, too large)
	DatagramsReceived uint64
	DatagramsReturned uint64 // handed back in OnLinkDown

	BytesSent     uint64
	BytesReceived uint64
	PingsSent     uint64
	PongsReceived uint64
	StreamsOpened uint64 // both directions
}

// failReason classifies a failed handshake.
type failReason int

const (
	failTimeout      failReason = iota // handshake deadline
	failNotTLS                         // the first bytes were not TLS
	failCertificate                    // a certificate was rejected, by us or by the peer
	failTLS                            // any other TLS failure (ALPN, version, alerts)
	failHello                          // malformed or missing Hello, unknown version
	failCluster                        // cluster names differ
	failUnauthorized                   // Authorize refused, here or at the peer
	failSelf                           // we reached ourselves
	failConn                           // TCP connect or I/O failure
	failClosed                         // we are shutting down, or the peer closed
	numFailReasons
)

func (r failReason) String() string {
	return [...]string{"timeout", "not-tls", "certificate", "tls", "hello", "cluster", "unauthorized", "self", "conn", "closed"}[r]
}

type counters struct {
	handshakesOK                              atomic.Uint64
	failures                                  [numFailReasons]atomic.Uint64
	rejectedRate, rejectedSource, rejectedAll atomic.Uint64
	dials, dialsFailed                        atomic.Uint64
	linksUp, linksDown, duplicates, dead      atomic.Uint64
	protocolErrors                            atomic.Uint64
	dgSent, dgRefused, dgReceived, dgReturned atomic.Uint64
	bytesSent, bytesReceived, pings, pongs    atomic.Uint64
	streamsOpened                             atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (n *Node) Stats() Stats {
	c := &n.stats
	s := Stats{
		HandshakesOK:      c.handshakesOK.Load(),
		HandshakeFailures: make(map[string]uint64),
		HandshakesNow:     n.adm.handshakes(),
		RejectedRate:      c.rejectedRate.Load(),
		RejectedSource:    c.rejectedSource.Load(),
		RejectedGlobal:    c.rejectedAll.Load(),
		Dials:             c.dials.Load(),
		DialsFailed:       c.dialsFailed.Load(),
		LinksUp:           c.linksUp.Load(),
		LinksDown:         c.linksDown.Load(),
		Duplicates:        c.duplicates.Load(),
		DeadVerdicts:      c.dead.Load(),
		ProtocolErrors:    c.protocolErrors.Load(),
		DatagramsSent:     c.dgSent.Load(),
		DatagramsRefused:  c.dgRefused.Load(),
		DatagramsReceived: c.dgReceived.Load(),
		DatagramsReturned: c.dgReturned.Load(),
		BytesSent:         c.bytesSent.Load(),
		BytesReceived:     c.bytesReceived.Load(),
		PingsSent:         c.pings.Load(),
		PongsReceived:     c.pongs.Load(),
		StreamsOpened:     c.streamsOpened.Load(),
	}
	for r := range numFailReasons {
		if v := c.failures[r].Load(); v > 0 {
			s.HandshakeFailures[r.String()] = v
		}
	}
	return s
}
