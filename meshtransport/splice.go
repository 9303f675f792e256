package meshtransport

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weaveworks/mesh"

	"github.com/meshkv/meshkv/internal/peerlink"
	"github.com/meshkv/meshkv/internal/ratelog"
)

// splice is one mesh connection carried over a link: a socket to our own
// mesh listener, and a stream on the link to the peer.
type splice struct {
	conn   *net.TCPConn
	stream *peerlink.Stream
	once   sync.Once
}

// close resets the socket (mesh sees the connection end at once) and
// closes the stream (the peer's side of the splice ends too).
func (s *splice) close() {
	s.once.Do(func() {
		_ = s.conn.SetLinger(0)
		_ = s.conn.Close()
		_ = s.stream.Close()
	})
}

func (set *spliceSet) add(s *splice) bool {
	set.mu.Lock()
	defer set.mu.Unlock()
	if set.ctx.Err() != nil {
		return false
	}
	set.active[s] = struct{}{}
	return true
}

func (set *spliceSet) remove(s *splice) {
	set.mu.Lock()
	delete(set.active, s)
	set.mu.Unlock()
}

// closeAll ends the link's splices; later ones are refused.
func (set *spliceSet) closeAll() {
	set.cancel()
	set.mu.Lock()
	active := set.active
	set.active = map[*splice]struct{}{}
	set.mu.Unlock()
	for s := range active {
		s.close()
	}
}

// spliceDialTimeout bounds connecting to our own loopback listener.
const spliceDialTimeout = 2 * time.Second

// runSplice connects to our mesh listener, registers the connection with
// the verifier as the peer's, and copies bytes both ways until either side
// ends or the link goes down. It closes the stream.
func (r *meshRouter) runSplice(set *spliceSet, peer peerlink.PublicKey, stream *peerlink.Stream) error {
	d := net.Dialer{Timeout: spliceDialTimeout, KeepAlive: -1, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	c, err := d.DialContext(set.ctx, "tcp", r.Addr())
	if err != nil {
		_ = stream.Close()
		return fmt.Errorf("connect to the mesh listener: %w", err)
	}
	conn := c.(*net.TCPConn)
	_ = conn.SetNoDelay(true)
	s := &splice{conn: conn, stream: stream}
	local := conn.LocalAddr().String()
	r.overlay.allow(local, PeerNameOf(peer))
	defer r.overlay.forget(local)
	if !set.add(s) {
		s.close()
		return set.ctx.Err()
	}
	defer set.remove(s)
	r.splices.Add(1)

	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, stream)
		done <- fmt.Errorf("link to mesh: %w", orEOF(err))
	}()
	go func() {
		w := &meshFrameCounter{w: stream, self: r.cfg.Name, r: r, skip: meshIntroLen}
		_, err := io.Copy(w, conn)
		done <- fmt.Errorf("mesh to link: %w", orEOF(err))
	}()
	err = <-done
	s.close()
	<-done
	return err
}

func orEOF(err error) error {
	if err == nil {
		return io.EOF
	}
	return err
}

// spliceVerifier is the mesh.Overlay of the router: it refuses every
// connection that is not a registered splice, and every splice whose peer
// announces a mesh name other than the one its link key maps to. A local
// process that connects to the loopback listener therefore gets nothing.
type spliceVerifier struct {
	refused atomic.Uint64
	log     *slog.Logger
	logs    *ratelog.Limiter
	mu      sync.Mutex
	allowed map[string]PeerName // splice socket address -> expected name
}

var _ mesh.Overlay = (*spliceVerifier)(nil)

func newSpliceVerifier(log *slog.Logger) *spliceVerifier {
	return &spliceVerifier{log: log, logs: ratelog.New(10 * time.Second), allowed: make(map[string]PeerName)}
}

// refuse counts and logs a refused connection (at most every 10s).
func (v *spliceVerifier) refuse(p mesh.OverlayConnectionParams, err error) (mesh.OverlayConnection, error) {
	v.refused.Add(1)
	if ok, suppressed := v.logs.Allow("refused", time.Now()); ok {
		attrs := []any{"err", err, "suppressed", suppressed}
		if p.RemoteAddr != nil {
			attrs = append(attrs, "remote", p.RemoteAddr.String())
		}
		if p.RemotePeer != nil {
			attrs = append(attrs, "announced_name", p.RemotePeer.Name.String())
		}
		v.log.Warn("mesh router refused a connection on its loopback port", attrs...)
	}
	return nil, err
}

func (v *spliceVerifier) allow(addr string, name PeerName) {
	v.mu.Lock()
	v.allowed[addr] = name
	v.mu.Unlock()
}

func (v *spliceVerifier) forget(addr string) {
	v.mu.Lock()
	delete(v.allowed, addr)
	v.mu.Unlock()
}

var (
	errNotSplice = errors.New("meshtransport: connection is not a splice of a peer link")
	errWrongName = errors.New("meshtransport: peer announced a mesh name its key does not map to")
)

// PrepareConnection implements mesh.Overlay.
func (v *spliceVerifier) PrepareConnection(p mesh.OverlayConnectionParams) (mesh.OverlayConnection, error) {
	if p.RemoteAddr == nil || p.RemotePeer == nil {
		return v.refuse(p, errNotSplice)
	}
	v.mu.Lock()
	want, ok := v.allowed[p.RemoteAddr.String()]
	v.mu.Unlock()
	switch {
	case !ok:
		return v.refuse(p, errNotSplice)
	case p.RemotePeer.Name != want:
		return v.refuse(p, errWrongName)
	}
	return mesh.NullOverlay{}, nil
}

// AddFeaturesTo implements mesh.Overlay.
func (v *spliceVerifier) AddFeaturesTo(map[string]string) {}

// Diagnostics implements mesh.Overlay.
func (v *spliceVerifier) Diagnostics() any { return nil }

// Stop implements mesh.Overlay.
func (v *spliceVerifier) Stop() {}

// meshFrameCounter passes mesh's outgoing byte stream through to the link
// and counts the unicast messages it carries whose source is another peer:
// the ones we relay for others. Mesh's protocol (version 2, no password):
// a 7-byte header ("weave", min and max version), an encryption flag byte,
// then messages of a 4-byte big-endian length and a body; the first body
// is the features map, later ones a tag byte and a gob stream. A unicast
// (tag 5) body holds the channel name, the source name, the destination
// name and the payload.
type meshFrameCounter struct {
	w    io.Writer
	self PeerName
	r    *meshRouter

	skip   int    // intro bytes still to pass
	hdr    []byte // length prefix being collected
	remain int    // bytes left in the current body
	seen   int    // messages seen after the intro
	body   []byte // the start of the current body, for unicast parsing
	size   int    // the current body's length
	own    []byte // how our own unicasts begin
}

const (
	meshIntroLen    = 8
	meshTagUnicast  = 5
	unicastHeadPeek = 128
)

func (m *meshFrameCounter) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	m.scan(p[:n])
	return n, err
}

// scan follows the message framing over the bytes passed through.
func (m *meshFrameCounter) scan(p []byte) {
	for len(p) > 0 {
		switch {
		case m.skip > 0:
			k := min(m.skip, len(p))
			m.skip -= k
			p = p[k:]
		case m.remain == 0:
			k := min(4-len(m.hdr), len(p))
			m.hdr = append(m.hdr, p[:k]...)
			p = p[k:]
			if len(m.hdr) == 4 {
				m.size = int(binary.BigEndian.Uint32(m.hdr))
				m.remain = m.size
				m.hdr = m.hdr[:0]
				m.body = m.body[:0]
				if m.remain == 0 {
					m.seen++
				}
			}
		default:
			k := min(m.remain, len(p))
			if room := unicastHeadPeek - len(m.body); room > 0 {
				m.body = append(m.body, p[:min(k, room)]...)
			}
			m.remain -= k
			p = p[k:]
			if m.remain == 0 {
				m.message()
			}
		}
	}
}

// message inspects a finished message.
func (m *meshFrameCounter) message() {
	m.seen++
	if m.seen == 1 || len(m.body) == 0 || m.body[0] != meshTagUnicast {
		return // the features map, or not a unicast
	}
	if m.own == nil {
		m.own = unicastPrefix(m.self)
	}
	if !bytes.HasPrefix(m.body[1:], m.own) {
		m.r.relayed.Add(1)
		m.r.relayedBytes.Add(uint64(m.size))
	}
}

// unicastPrefix is how a unicast we originate begins: mesh gob-encodes
// the channel name and the source name with a fresh encoder, so the
// bytes are always the same.
func unicastPrefix(self PeerName) []byte {
	var b bytes.Buffer
	enc := gob.NewEncoder(&b)
	_ = enc.Encode(unicastChannel) // encoding a string and a uint64 cannot fail
	_ = enc.Encode(self)
	return b.Bytes()
}
