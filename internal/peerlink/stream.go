package peerlink

import (
	"fmt"
	"io"
	"sync"
)

// Stream is an ordered, reliable byte stream over a link, for protocols
// that want a connection (mesh's own). It ends when either side closes it
// or when the link goes down.
//
// Flow control is by credit: the receiver grants its window (Config.
// StreamWindow, announced in the Hello) and grants more as its reader
// consumes, so Write blocks when the peer's reader falls a window behind,
// and neither side ever buffers more than a window per stream. Close is
// a full close: the peer's reads return io.EOF after the buffered bytes and
// its writes fail.
//
// Read and Write may be called concurrently with each other and with
// Close; concurrent Reads (or Writes) are serialized but interleave.
type Stream struct {
	l      *link
	id     uint64
	window int

	mu          sync.Mutex
	cond        sync.Cond
	rbuf        [][]byte
	rlen        int  // bytes in rbuf
	outstanding int  // bytes received and not yet credited back
	consumed    int  // bytes read and not yet credited back
	credit      int  // bytes we may still send
	peerClosed  bool // the peer sent SCLOSE
	closed      bool // Close was called
	err         error
	sentClose   bool // guarded by l.mu: our SCLOSE is queued
}

var _ io.ReadWriteCloser = (*Stream)(nil)

func newStream(l *link, id uint64) *Stream {
	s := &Stream{l: l, id: id, window: l.n.cfg.StreamWindow, credit: l.peerWindow}
	s.cond.L = &s.mu
	return s
}

// Peer returns the key of the peer at the other end.
func (s *Stream) Peer() PublicKey { return s.l.peer }

// Read reads buffered bytes, blocking until some arrive. It returns io.EOF
// once the peer closed the stream and everything was read, the link's
// down reason once the link is gone and everything was read, and
// ErrStreamClosed after Close.
func (s *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.mu.Lock()
	for s.rlen == 0 && !s.closed && !s.peerClosed && s.err == nil {
		s.cond.Wait()
	}
	if s.closed {
		s.mu.Unlock()
		return 0, ErrStreamClosed
	}
	if s.rlen == 0 {
		err := s.err
		if s.peerClosed {
			err = io.EOF
		}
		s.mu.Unlock()
		return 0, err
	}
	n := 0
	for n < len(p) && len(s.rbuf) > 0 {
		c := copy(p[n:], s.rbuf[0])
		n += c
		if c == len(s.rbuf[0]) {
			s.rbuf[0] = nil
			s.rbuf = s.rbuf[1:]
		} else {
			s.rbuf[0] = s.rbuf[0][c:]
		}
	}
	s.rlen -= n
	s.consumed += n
	grant := 0
	if s.consumed >= s.window/4 && !s.peerClosed && s.err == nil {
		grant, s.consumed = s.consumed, 0
		s.outstanding -= grant
	}
	s.mu.Unlock()
	if grant > 0 {
		s.l.queueCredit(s.id, grant)
	}
	return n, nil
}

// writeErr is why a write cannot proceed, or nil.
func (s *Stream) writeErr() error {
	switch {
	case s.closed:
		return ErrStreamClosed
	case s.peerClosed:
		return fmt.Errorf("%w by peer", ErrStreamClosed)
	}
	return s.err
}

// Write queues p for the peer, blocking while the peer's window is full. It
// returns when all of p is queued (the link's writer sends it in order), or
// with an error once the stream or the link is closed.
func (s *Stream) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		s.mu.Lock()
		for s.credit == 0 && s.writeErr() == nil {
			s.cond.Wait()
		}
		if err := s.writeErr(); err != nil {
			s.mu.Unlock()
			return total, err
		}
		k := min(len(p), s.credit, streamChunk)
		s.credit -= k
		s.mu.Unlock()
		if !s.l.queueStream(streamRec{t: recSData, id: s.id, data: append([]byte(nil), p[:k]...)}) {
			s.mu.Lock()
			err := s.writeErr()
			s.mu.Unlock()
			if err == nil {
				err = fmt.Errorf("%w: link closing", ErrStreamClosed)
			}
			return total, err
		}
		p = p[k:]
		total += k
	}
	return total, nil
}

// Close closes the stream in both directions and discards unread bytes. It
// never blocks and is idempotent.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.rbuf, s.rlen = nil, 0
	s.cond.Broadcast()
	s.mu.Unlock()
	s.l.closeStream(s)
	return nil
}

// deliver appends bytes from the peer.
func (s *Stream) deliver(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outstanding += len(b)
	if s.outstanding > s.window {
		return fmt.Errorf("%w: stream %d: %d bytes beyond the window of %d", ErrProtocol, s.id, s.outstanding, s.window)
	}
	if s.closed || s.err != nil {
		return nil
	}
	s.rbuf = append(s.rbuf, b)
	s.rlen += len(b)
	s.cond.Broadcast()
	return nil
}

// grant adds credit from the peer.
func (s *Stream) grant(c uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c > uint64(s.l.peerWindow) || s.credit+int(c) > s.l.peerWindow {
		return fmt.Errorf("%w: stream %d: credit beyond the window of %d", ErrProtocol, s.id, s.l.peerWindow)
	}
	s.credit += int(c)
	s.cond.Broadcast()
	return nil
}

// remoteClose marks the stream closed by the peer.
func (s *Stream) remoteClose() {
	s.mu.Lock()
	s.peerClosed = true
	s.cond.Broadcast()
	s.mu.Unlock()
}

// fail ends the stream because its link is down.
func (s *Stream) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.cond.Broadcast()
	s.mu.Unlock()
}

// Stream ids: the dialler's are odd, the acceptor's even; the k-th stream a
// side opens has ordinal k, and ordinal(id) = (id+1)/2 for both parities.
func ordinal(id uint64) uint64 { return (id + 1) / 2 }

func (l *link) ourParity() uint64 {
	if l.info.Dialled {
		return 1
	}
	return 0
}

// OpenStream opens a new stream on the link.
func (l *link) openStream() (*Stream, error) {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return nil, ErrNoLink
	}
	if len(l.streams) >= l.n.cfg.MaxStreams {
		l.mu.Unlock()
		return nil, ErrTooManyStreams
	}
	l.opened++
	id := 2*l.opened - l.ourParity()
	s := newStream(l, id)
	l.streams[id] = s
	l.sq = append(l.sq, streamRec{t: recSOpen, id: id})
	l.mu.Unlock()
	l.n.stats.streamsOpened.Add(1)
	l.wake()
	return s, nil
}

// lookupStream finds the stream for a record from the peer. A nil stream
// with a nil error means a stream that existed and is gone (late records
// are ignored); an id that was never opened is a protocol violation.
func (l *link) lookupStream(id uint64) (*Stream, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.streams[id]; s != nil {
		return s, nil
	}
	seen := l.peerOpened
	if id%2 == l.ourParity() {
		seen = l.opened
	}
	if id == 0 || ordinal(id) > seen {
		return nil, fmt.Errorf("%w: record for unknown stream %d", ErrProtocol, id)
	}
	return nil, nil
}

func (l *link) onStreamOpen(id uint64) error {
	l.mu.Lock()
	if id == 0 || id%2 == l.ourParity() || ordinal(id) != l.peerOpened+1 {
		l.mu.Unlock()
		return fmt.Errorf("%w: peer opened stream %d, want ordinal %d", ErrProtocol, id, l.peerOpened+1)
	}
	l.peerOpened++
	if len(l.streams) >= l.n.cfg.MaxStreams {
		l.sq = append(l.sq, streamRec{t: recSClose, id: id}) // refuse
		l.mu.Unlock()
		l.wake()
		return nil
	}
	s := newStream(l, id)
	l.streams[id] = s
	l.mu.Unlock()
	l.n.stats.streamsOpened.Add(1)
	l.n.cfg.Handler.OnStream(l.peer, s)
	return nil
}

func (l *link) onStreamData(id uint64, b []byte) error {
	s, err := l.lookupStream(id)
	if s == nil {
		return err
	}
	return s.deliver(b)
}

func (l *link) onStreamCredit(id, c uint64) error {
	s, err := l.lookupStream(id)
	if s == nil {
		return err
	}
	return s.grant(c)
}

// onStreamClose ends a stream the peer closed, answering with our own
// SCLOSE unless we sent one already; the id is then free on both sides.
func (l *link) onStreamClose(id uint64) error {
	s, err := l.lookupStream(id)
	if s == nil {
		return err
	}
	l.mu.Lock()
	delete(l.streams, id)
	reply := !s.sentClose
	if reply {
		s.sentClose = true
		l.sq = append(l.sq, streamRec{t: recSClose, id: id})
	}
	l.mu.Unlock()
	if reply {
		l.wake()
	}
	s.remoteClose()
	return nil
}

// closeStream sends our SCLOSE for s; the stream stays registered until the
// peer's SCLOSE arrives, so late bytes are still checked against the window.
func (l *link) closeStream(s *Stream) {
	l.mu.Lock()
	if l.closing || s.sentClose {
		l.mu.Unlock()
		return
	}
	s.sentClose = true
	l.sq = append(l.sq, streamRec{t: recSClose, id: s.id})
	l.mu.Unlock()
	l.wake()
}

// queueStream queues a stream record; false once the link is closing.
func (l *link) queueStream(r streamRec) bool {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return false
	}
	l.sq = append(l.sq, r)
	l.mu.Unlock()
	l.wake()
	return true
}

// queueCredit grants the peer more credit on stream id.
func (l *link) queueCredit(id uint64, c int) {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return
	}
	if _, ok := l.streams[id]; ok {
		l.credits[id] += c
	}
	l.mu.Unlock()
	l.wake()
}
