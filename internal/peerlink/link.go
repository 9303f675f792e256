package peerlink

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Tuning of the writer and of acknowledgements.
const (
	// dgBudget and streamBudget bound the datagram and stream bytes of one
	// batch, so neither starves the other (a batch holds at least one
	// datagram however large).
	dgBudget     = 128 << 10
	streamBudget = 64 << 10
	// maxKeptBuf: a write buffer that grew beyond this (a large datagram) is
	// dropped after use instead of being kept for the link's lifetime.
	maxKeptBuf = 256 << 10
	// ackEvery: the reader asks for a standalone ACK after this many
	// unacknowledged datagrams; fewer are acknowledged on the next batch
	// or clock tick.
	ackEvery = 16
	// maxPongs bounds pending pongs (only the newest are answered).
	maxPongs = 4
	// closeGrace bounds the write of a final CLOSE record.
	closeGrace = 500 * time.Millisecond
)

type outDatagram struct {
	seq  uint64
	data []byte
}

// streamRec is a pending SOPEN, SDATA or SCLOSE, kept in write order.
type streamRec struct {
	t    byte
	id   uint64
	data []byte
}

// link is one authenticated connection to a peer. Its reader goroutine
// (run) owns the read side and the link's lifecycle events; its writer
// goroutine (writeLoop) is the only one that writes to the connection.
type link struct {
	n    *Node
	info PeerInfo
	peer PublicKey
	conn net.Conn // closing it stops both goroutines
	tc   *tls.Conn
	br   *bufio.Reader

	rankKey         PublicKey // who dialled; with rankNonce, orders duplicates
	rankNonce       uint64
	peerMaxDatagram int
	peerWindow      int
	since           time.Time

	wakeC      chan struct{} // wakes the writer; capacity 1
	writerDone chan struct{}
	downC      chan struct{} // closed after OnLinkDown returned
	prev       *link         // the link this one replaced

	lastRecv          atomic.Int64  // Node.clock() of the latest record
	delivered         atomic.Uint64 // highest DATA sequence handed to the handler
	ackSentA          atomic.Uint64 // copy of ackSent for the reader
	ackReq            atomic.Bool   // send an ACK even without other traffic
	closingA          atomic.Bool   // copy of closing for the reader
	bytesIn, bytesOut atomic.Uint64
	acksSent          atomic.Uint64 // standalone ACK records written

	mu         sync.Mutex
	closing    bool
	closeErr   error
	closeCode  closeCode // 0: close without telling the peer
	closeText  string
	closeSent  bool
	nextSeq    uint64        // sequence of the last datagram accepted by send
	queue      []outDatagram // accepted, not yet written; from qhead
	qhead      int
	unacked    []outDatagram // written, not yet acknowledged; from uhead
	uhead      int
	inflightB  int    // bytes in queue and unacked
	written    uint64 // highest sequence written
	acked      uint64 // highest sequence the peer acknowledged
	ackSent    uint64 // highest acknowledgement we sent
	pongs      []uint64
	ping       uint64 // ping id to send; 0 none
	credits    map[uint64]int
	sq         []streamRec
	streams    map[uint64]*Stream
	opened     uint64 // streams we opened (ids are odd if we dialled, else even)
	peerOpened uint64 // streams the peer opened
	live       *liveness
}

func newLink(n *Node, conn net.Conn, tc *tls.Conn, br *bufio.Reader, info PeerInfo) *link {
	l := &link{
		n: n, info: info, peer: info.Key, conn: conn, tc: tc, br: br,
		wakeC:      make(chan struct{}, 1),
		writerDone: make(chan struct{}),
		downC:      make(chan struct{}),
		credits:    make(map[uint64]int),
		streams:    make(map[uint64]*Stream),
	}
	return l
}

// ranksBefore reports whether l wins duplicate resolution against o: the
// link dialled by the smaller key, then the smaller nonce, stays. Both ends
// compute the same answer.
func (l *link) ranksBefore(o *link) bool {
	if l.rankKey != o.rankKey {
		return l.rankKey.less(o.rankKey)
	}
	return l.rankNonce <= o.rankNonce
}

func (l *link) wake() {
	select {
	case l.wakeC <- struct{}{}:
	default:
	}
}

func (l *link) isClosing() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closing
}

// close starts closing the link for reason. With a code, the writer first
// sends a CLOSE record (bounded by closeGrace); without one the connection
// is closed at once. Only the first call counts.
func (l *link) close(reason error, code closeCode, text string) {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return
	}
	l.closing = true
	l.closingA.Store(true)
	l.closeErr, l.closeCode, l.closeText = reason, code, text
	if code != 0 {
		// Also bounds a write in progress: the writer sets its deadlines
		// under mu, so this one is not overwritten.
		_ = l.conn.SetWriteDeadline(time.Now().Add(closeGrace))
	}
	l.mu.Unlock()
	if code == 0 {
		if errors.Is(reason, ErrDead) {
			abortConn(l.conn)
		} else {
			_ = l.conn.Close()
		}
	}
	l.wake()
}

// history returns what the link's liveness knows about the peer, faded to
// now, for a link that replaces it.
func (l *link) history(now time.Time) peerHistory {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.live == nil {
		return peerHistory{}
	}
	h := l.live.hist
	h.decay(now)
	return h
}

// abortConn closes c with a reset instead of a FIN. Used when the path is
// declared dead: if only our direction of the path is broken (a one-way
// cut), what we sent is unacknowledged, the kernel's congestion window has
// collapsed and a FIN would wait behind the retransmissions, so the peer
// would only notice by its own silence threshold. A reset leaves at once
// and ends the connection on the peer's side as soon as it arrives.
func abortConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// send queues a datagram; see Node.Send.
func (l *link) send(data []byte) bool {
	if len(data) > l.peerMaxDatagram || len(data) > l.n.cfg.MaxDatagram {
		return false
	}
	l.mu.Lock()
	inFlight := len(l.queue) - l.qhead + len(l.unacked) - l.uhead
	if l.closing || inFlight >= l.n.cfg.SendQueue || l.inflightB+len(data) > l.n.cfg.SendQueueBytes {
		l.mu.Unlock()
		return false
	}
	l.nextSeq++
	l.queue = append(l.queue, outDatagram{seq: l.nextSeq, data: data})
	l.inflightB += len(data)
	l.mu.Unlock()
	l.wake()
	return true
}

// writeLoop is the link's only writer. It sleeps until woken, then writes
// everything pending in as few socket writes as the batch budgets allow.
func (l *link) writeLoop() {
	defer close(l.writerDone)
	var buf []byte
	for range l.wakeC {
		for {
			var more, final bool
			buf, more, final = l.fill(buf[:0])
			if len(buf) > 0 {
				if _, err := l.tc.Write(buf); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						l.close(fmt.Errorf("%w: write timed out", ErrDead), 0, "")
					} else {
						l.close(fmt.Errorf("%w: write: %v", ErrConnLost, err), 0, "")
					}
					_ = l.conn.Close()
					return
				}
				l.bytesOut.Add(uint64(len(buf)))
				l.n.stats.bytesSent.Add(uint64(len(buf)))
			}
			if final {
				if len(buf) > 0 {
					// The CLOSE record is out: half-close and let the reader
					// drain until the peer closes too (bounded), so that our
					// close does not reset the connection and destroy the
					// record before the peer reads it.
					lingerClose(l.conn)
				} else {
					_ = l.conn.Close()
				}
				return
			}
			if cap(buf) > maxKeptBuf {
				buf = nil
			}
			if !more {
				break
			}
		}
	}
}

// fill appends the next batch to buf. final means the link is closing and
// buf holds at most the CLOSE record. It also sets the write deadline for
// the batch, under mu so that close can shorten it.
func (l *link) fill(buf []byte) (out []byte, more, final bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		if l.closeCode != 0 && !l.closeSent {
			l.closeSent = true
			buf = appendClose(buf, l.closeCode, l.closeText)
		}
		return buf, false, true
	}
	for _, id := range l.pongs {
		buf = appendUvarintRecord(buf, recPong, id)
	}
	l.pongs = l.pongs[:0]
	if l.ping != 0 {
		buf = appendUvarintRecord(buf, recPing, l.ping)
		l.ping = 0
		l.n.stats.pings.Add(1)
	}
	for id, c := range l.credits {
		buf = appendUvarintRecord(buf, recSCredit, id, uint64(c))
		delete(l.credits, id)
	}
	ack := l.delivered.Load()
	start, sentData := len(buf), false
	for l.qhead < len(l.queue) && (!sentData || len(buf)-start < dgBudget) {
		d := l.queue[l.qhead]
		l.queue[l.qhead] = outDatagram{}
		l.qhead++
		buf = appendData(buf, d.seq, ack, d.data)
		l.unacked = append(l.unacked, d)
		l.written = d.seq
		sentData = true
	}
	if l.qhead == len(l.queue) {
		l.queue, l.qhead = l.queue[:0], 0
	}
	if ack > l.ackSent && (sentData || len(buf) > 0 || l.ackReq.Load()) {
		if !sentData {
			buf = appendUvarintRecord(buf, recAck, ack)
			l.acksSent.Add(1)
		}
		l.ackSent = ack
		l.ackSentA.Store(ack)
		l.ackReq.Store(false)
	}
	start = len(buf)
	for len(l.sq) > 0 && len(buf)-start < streamBudget {
		r := l.sq[0]
		l.sq[0] = streamRec{}
		l.sq = l.sq[1:]
		if r.t == recSData {
			buf = appendStreamData(buf, r.id, r.data)
		} else {
			buf = appendUvarintRecord(buf, r.t, r.id)
		}
	}
	if len(buf) > 0 {
		_ = l.conn.SetWriteDeadline(time.Now().Add(l.n.cfg.WriteTimeout))
	}
	return buf, l.qhead < len(l.queue) || len(l.sq) > 0, false
}

// onAck drops acknowledged datagrams.
func (l *link) onAck(ack uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ack < l.acked || ack > l.written {
		return fmt.Errorf("%w: ack %d outside [%d, %d]", ErrProtocol, ack, l.acked, l.written)
	}
	for l.uhead < len(l.unacked) && l.unacked[l.uhead].seq <= ack {
		l.inflightB -= len(l.unacked[l.uhead].data)
		l.unacked[l.uhead] = outDatagram{}
		l.uhead++
	}
	if l.uhead == len(l.unacked) {
		l.unacked, l.uhead = l.unacked[:0], 0
	} else if l.uhead > 1024 && l.uhead > len(l.unacked)/2 {
		l.unacked = append(l.unacked[:0], l.unacked[l.uhead:]...)
		l.uhead = 0
	}
	l.acked = ack
	return nil
}

// readLoop reads and dispatches records until the connection fails or the
// peer misbehaves or closes.
func (l *link) readLoop() error {
	n := l.n
	limits := recordLimits{established: true, maxDatagram: n.cfg.MaxDatagram}
	var scratch []byte
	for {
		t, body, err := readRecord(l.br, limits, &scratch)
		if err != nil {
			if errors.Is(err, errMalformed) {
				return fmt.Errorf("%w: %v", ErrProtocol, err)
			}
			return fmt.Errorf("%w: %v", ErrConnLost, err)
		}
		l.lastRecv.Store(n.clock())
		size := uint64(headerLen + len(body))
		l.bytesIn.Add(size)
		n.stats.bytesReceived.Add(size)
		if l.closingA.Load() {
			continue // draining after our CLOSE: deliver nothing more
		}
		if err := l.handle(t, body); err != nil {
			return err
		}
	}
}

func protocolErr(err error) error {
	if errors.Is(err, ErrProtocol) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrProtocol, err)
}

// handle processes one record.
func (l *link) handle(t byte, body []byte) error {
	n := l.n
	switch t {
	case recData:
		seq, ack, payload, err := decodeData(body)
		if err != nil {
			return protocolErr(err)
		}
		if want := l.delivered.Load() + 1; seq != want {
			return fmt.Errorf("%w: datagram %d, want %d", ErrProtocol, seq, want)
		}
		if err := l.onAck(ack); err != nil {
			return err
		}
		n.cfg.Handler.OnDatagram(l.peer, payload)
		l.delivered.Store(seq)
		n.stats.dgReceived.Add(1)
		if seq-l.ackSentA.Load() >= ackEvery && !l.ackReq.Swap(true) {
			l.wake()
		}
	case recAck:
		var ack uint64
		if err := decodeUvarints(body, "ACK", &ack); err != nil {
			return protocolErr(err)
		}
		return l.onAck(ack)
	case recPing:
		var id uint64
		if err := decodeUvarints(body, "PING", &id); err != nil {
			return protocolErr(err)
		}
		l.mu.Lock()
		if len(l.pongs) == maxPongs {
			copy(l.pongs, l.pongs[1:])
			l.pongs = l.pongs[:maxPongs-1]
		}
		l.pongs = append(l.pongs, id)
		l.mu.Unlock()
		l.wake()
	case recPong:
		var id uint64
		if err := decodeUvarints(body, "PONG", &id); err != nil {
			return protocolErr(err)
		}
		l.mu.Lock()
		_, ok := l.live.pong(id, n.timeAt(l.lastRecv.Load()))
		l.mu.Unlock()
		if ok {
			n.stats.pongs.Add(1)
		}
	case recSOpen, recSClose:
		var id uint64
		if err := decodeUvarints(body, recordName(t), &id); err != nil {
			return protocolErr(err)
		}
		if t == recSOpen {
			return l.onStreamOpen(id)
		}
		return l.onStreamClose(id)
	case recSData:
		id, payload, err := decodeStreamData(body)
		if err != nil {
			return protocolErr(err)
		}
		return l.onStreamData(id, payload)
	case recSCredit:
		var id, credit uint64
		if err := decodeUvarints(body, "SCREDIT", &id, &credit); err != nil {
			return protocolErr(err)
		}
		return l.onStreamCredit(id, credit)
	case recClose:
		code, reason, err := decodeClose(body)
		if err != nil {
			return protocolErr(err)
		}
		return &peerCloseError{code: code, reason: reason}
	default:
		return fmt.Errorf("%w: unexpected %s", ErrProtocol, recordName(t))
	}
	return nil
}

// peerCloseError is the reason of a link the peer closed with a CLOSE record.
type peerCloseError struct {
	code   closeCode
	reason string
}

func (e *peerCloseError) Error() string {
	return fmt.Sprintf("%v (%v): %s", ErrPeerClosed, e.code, e.reason)
}

func (e *peerCloseError) Is(target error) bool {
	return target == ErrPeerClosed || (e.code == closeDuplicate && target == ErrDuplicate)
}

// tick advances the link's liveness to now: it may send a ping, flush a
// pending acknowledgement, or declare the link dead.
func (l *link) tick(now time.Time) {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return
	}
	l.live.received(l.n.timeAt(l.lastRecv.Load()))
	if now.Sub(l.live.lastRecv) > l.live.threshold() && rxBacklog(l.conn) {
		// Bytes wait in the kernel: the peer is alive and our reader is
		// behind (a starved process), so this silence is not the path's.
		l.live.received(now)
	}
	r := l.live.tick(now)
	threshold := l.live.threshold()
	wake := false
	if r.ping {
		l.ping, wake = r.pingID, true
	}
	if l.delivered.Load() > l.ackSent {
		l.ackReq.Store(true)
		wake = true
	}
	l.mu.Unlock()
	if r.dead {
		l.n.stats.dead.Add(1)
		l.close(fmt.Errorf("%w: silent for more than %v", ErrDead, threshold), 0, "")
		return
	}
	if wake {
		l.wake()
	}
}

// run is the link's reader goroutine: it starts the writer, announces the
// link once its predecessor is down, reads until the link ends and then
// tears it down.
func (l *link) run() {
	n := l.n
	n.wg.Go(l.writeLoop)
	if l.prev != nil {
		<-l.prev.downC
		l.prev = nil
	}
	n.cfg.Handler.OnLinkUp(l.info)
	err := l.readLoop()

	var code closeCode
	text := ""
	var pce *peerCloseError
	switch {
	case errors.As(err, &pce):
		level := n.log.Info
		if pce.code == closeProtocol || pce.code == closeUnauthorized || pce.code == closeCluster {
			level = n.log.Warn
		}
		level("peerlink: peer closed the link", "peer", l.peer, "remote", l.info.RemoteAddr,
			"code", pce.code.String(), "reason", pce.reason)
	case errors.Is(err, ErrProtocol):
		code, text = closeProtocol, err.Error()
		n.stats.protocolErrors.Add(1)
		n.log.Warn("peerlink: protocol violation, disconnecting", "peer", l.peer, "remote", l.info.RemoteAddr, "err", err)
	}
	l.close(err, code, text)
	<-l.writerDone
	// If the writer just sent a CLOSE (a protocol violation), give the peer
	// a moment to read it; otherwise the connection is already closed or
	// broken and this returns at once.
	drainClose(l.conn)

	l.mu.Lock()
	reason := l.closeErr
	undelivered := make([][]byte, 0, len(l.unacked)-l.uhead+len(l.queue)-l.qhead)
	for _, d := range l.unacked[l.uhead:] {
		undelivered = append(undelivered, d.data)
	}
	for _, d := range l.queue[l.qhead:] {
		undelivered = append(undelivered, d.data)
	}
	l.unacked, l.queue, l.uhead, l.qhead, l.inflightB = nil, nil, 0, 0, 0
	l.sq = nil
	streams := l.streams
	l.streams = map[uint64]*Stream{}
	end := endOther
	switch {
	case errors.Is(reason, ErrDead):
		end = endDead
	case errors.Is(reason, ErrConnLost):
		end = endLost
	}
	hist := l.live.down(time.Now(), end)
	l.mu.Unlock()
	for _, s := range streams {
		s.fail(reason)
	}

	n.stats.linksDown.Add(1)
	n.stats.dgReturned.Add(uint64(len(undelivered)))
	n.log.Info("peerlink: link down", "peer", l.peer, "remote", l.info.RemoteAddr,
		"reason", reason, "lived", time.Since(l.since).Round(time.Millisecond), "undelivered", len(undelivered))
	n.cfg.Handler.OnLinkDown(l.peer, reason, undelivered)
	close(l.downC)
	n.unregister(l, hist)
}

// refuse closes a link that was never registered, telling the peer why.
func (l *link) refuse(code closeCode, text string) {
	_ = l.conn.SetWriteDeadline(time.Now().Add(closeGrace))
	if _, err := l.tc.Write(appendClose(nil, code, text)); err != nil {
		_ = l.conn.Close()
		return
	}
	lingerClose(l.conn)
	drainClose(l.conn)
}

// lingerClose half-closes c after a final record and bounds the wait for
// the peer's close: reads fail after closeGrace.
func lingerClose(c net.Conn) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(closeGrace))
}

// drainClose reads and discards until the peer closes or the read deadline
// passes, then closes c.
func drainClose(c net.Conn) {
	buf := make([]byte, 1024)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
	}
	_ = c.Close()
}

// snapshot describes the link for Node.Links.
func (l *link) snapshot() LinkInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return LinkInfo{
		PeerInfo:      l.info,
		Since:         l.since,
		RTT:           l.live.rtt,
		Threshold:     l.live.threshold(),
		InFlight:      len(l.queue) - l.qhead + len(l.unacked) - l.uhead,
		Streams:       len(l.streams),
		BytesSent:     l.bytesOut.Load(),
		BytesReceived: l.bytesIn.Load(),
		Closing:       l.closing,
	}
}
