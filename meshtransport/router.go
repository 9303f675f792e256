package meshtransport

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weaveworks/mesh"

	"github.com/meshkv/meshkv/internal/peerlink"
)

// Gossip channel names on the mesh router.
const (
	unicastChannel = "meshkv-sealed" // sealed frames
	metaChannel    = "meshkv-meta"   // signed gossip entries
)

// meshRouter is the real Router: a mesh.Router listening on 127.0.0.1 at an
// ephemeral port, with no password and no discovery of its own. Its only
// connections are splices: for each link, the side that dialled the link
// opens a stream on it, and each side connects to its own mesh listener
// and copies bytes between that socket and the stream. When the link goes
// down the sockets are closed, mesh sees its connection end and reroutes
// at once. A verifying Overlay admits only connections that are registered
// splices, from the peer name the link's key maps to.
type meshRouter struct {
	cfg     RouterConfig
	log     *slog.Logger
	router  *mesh.Router
	sealed  mesh.Gossip
	meta    mesh.Gossip
	overlay *spliceVerifier
	port    int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	splices, spliceFailures atomic.Uint64
	relayed, relayedBytes   atomic.Uint64

	mu      sync.Mutex
	started bool
	closed  bool
	links   map[peerlink.PublicKey]*spliceSet
}

var _ Router = (*meshRouter)(nil)

// spliceSet is what the router keeps per live link.
type spliceSet struct {
	ctx    context.Context // ends when the link goes down
	cancel context.CancelFunc
	mu     sync.Mutex
	active map[*splice]struct{}
}

func newMeshRouter(cfg RouterConfig) (*meshRouter, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &meshRouter{
		cfg:     cfg,
		log:     cfg.Logger,
		overlay: newSpliceVerifier(cfg.Logger),
		links:   make(map[peerlink.PublicKey]*spliceSet),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	gi := cfg.GossipInterval
	mr, err := mesh.NewRouter(mesh.Config{
		Host:               "127.0.0.1",
		Port:               0, // set by Start
		ProtocolMinVersion: 2,
		ConnLimit:          1024,
		PeerDiscovery:      false,
		GossipInterval:     &gi,
	}, cfg.Name, cfg.NickName, r.overlay, meshLogger{cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("create mesh router: %w", err)
	}
	if r.sealed, err = mr.NewGossip(unicastChannel, unicastGossiper{deliver: cfg.Deliver}); err != nil {
		return nil, fmt.Errorf("register channel: %w", err)
	}
	if r.meta, err = mr.NewGossip(metaChannel, cfg.Gossip); err != nil {
		return nil, fmt.Errorf("register channel: %w", err)
	}
	r.router = mr
	return r, nil
}

// Start binds a loopback port (mesh panics if it cannot; we bind first and
// return an error instead) and starts mesh.
func (r *meshRouter) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("%w: mesh loopback port: %v", ErrBind, err)
	}
	r.port = ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return fmt.Errorf("%w: %v", ErrBind, err)
	}
	r.router.Port = r.port
	if err := startRouter(r.router); err != nil {
		return err
	}
	if f := r.cfg.RoutesChanged; f != nil {
		r.router.Routes.OnChange(f)
		r.router.Peers.OnGC(func(*mesh.Peer) { f() })
	}
	r.mu.Lock()
	r.started = true
	r.mu.Unlock()
	return nil
}

// startRouter starts mesh, turning its bind panic (possible if someone took
// the port since we checked it) into ErrBind.
func startRouter(mr *mesh.Router) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrBind, p)
		}
	}()
	mr.Start()
	return nil
}

// Close closes every splice and stops the router. Mesh's listener and its
// connection goroutines cannot be stopped (mesh has no API for it): the
// listener lingers on its loopback port until the process exits, with no
// splice left to admit.
func (r *meshRouter) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	started := r.started
	sets := r.links
	r.links = map[peerlink.PublicKey]*spliceSet{}
	r.mu.Unlock()
	r.cancel()
	for _, s := range sets {
		s.closeAll()
	}
	r.wg.Wait()
	if started {
		return r.router.Stop()
	}
	return nil
}

// Addr is the loopback address mesh listens on.
func (r *meshRouter) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

func (r *meshRouter) Unicast(dst PeerName, msg []byte) error { return r.sealed.GossipUnicast(dst, msg) }

func (r *meshRouter) NextHop(dst PeerName) (PeerName, bool) { return r.router.Routes.UnicastAll(dst) }

func (r *meshRouter) Broadcast(d mesh.GossipData) { r.meta.GossipBroadcast(d) }

func (r *meshRouter) LinkUp(info peerlink.PeerInfo) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	if old := r.links[info.Key]; old != nil {
		old.closeAll()
	}
	ctx, cancel := context.WithCancel(r.ctx)
	set := &spliceSet{ctx: ctx, cancel: cancel, active: make(map[*splice]struct{})}
	r.links[info.Key] = set
	r.mu.Unlock()
	if info.Dialled {
		r.wg.Go(func() { r.dialLoop(set, info.Key) })
	}
}

func (r *meshRouter) Stream(peer peerlink.PublicKey, s *peerlink.Stream) {
	r.mu.Lock()
	set := r.links[peer]
	r.mu.Unlock()
	if set == nil || set.ctx.Err() != nil {
		_ = s.Close()
		return
	}
	r.wg.Go(func() {
		if err := r.runSplice(set, peer, s); err != nil && set.ctx.Err() == nil {
			r.spliceFailures.Add(1)
			r.log.Debug("mesh splice ended", "peer", RaftIDOf(peer).String(), "err", err)
		}
	})
}

func (r *meshRouter) LinkDown(peer peerlink.PublicKey) {
	r.mu.Lock()
	set := r.links[peer]
	delete(r.links, peer)
	r.mu.Unlock()
	if set != nil {
		set.closeAll()
	}
}

func (r *meshRouter) Stats() RouterStats {
	conns := 0
	if r.router != nil {
		r.mu.Lock()
		started := r.started
		r.mu.Unlock()
		if started {
			for _, d := range r.router.Peers.Descriptions() {
				if d.Self {
					conns = d.NumConnections
				}
			}
		}
	}
	return RouterStats{
		Connections:          conns,
		Splices:              r.splices.Load(),
		SpliceFailures:       r.spliceFailures.Load(),
		RefusedConnections:   r.overlay.refused.Load(),
		RelayedForOthers:     r.relayed.Load(),
		RelayedForOthersByte: r.relayedBytes.Load(),
	}
}

// dialLoop keeps one splice going over the link we dialled, until the link
// goes down: mesh may close a connection (a duplicate while an old one is
// being torn down), and then the splice is made again.
func (r *meshRouter) dialLoop(set *spliceSet, peer peerlink.PublicKey) {
	backoff := 50 * time.Millisecond
	for set.ctx.Err() == nil {
		start := time.Now()
		s, err := r.cfg.OpenStream(peer)
		if err == nil {
			err = r.runSplice(set, peer, s)
		}
		if set.ctx.Err() != nil {
			return
		}
		r.spliceFailures.Add(1)
		r.log.Debug("mesh splice ended; making it again", "peer", RaftIDOf(peer).String(), "err", err, "retry_in", backoff)
		if time.Since(start) > 5*time.Second {
			backoff = 50 * time.Millisecond
		}
		t := time.NewTimer(backoff)
		select {
		case <-set.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// meshLogger adapts mesh's Printf logging to slog at debug level.
type meshLogger struct{ l *slog.Logger }

var _ mesh.Logger = meshLogger{}

func (m meshLogger) Printf(format string, args ...any) {
	if !m.l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	m.l.Debug(fmt.Sprintf(format, args...))
}

// unicastGossiper is the mesh.Gossiper of the sealed channel. Its
// callbacks run on mesh's connection goroutines: they hand the bytes on and
// never block, send or fail.
type unicastGossiper struct{ deliver func([]byte) }

var _ mesh.Gossiper = unicastGossiper{}

func (g unicastGossiper) OnGossipUnicast(_ mesh.PeerName, msg []byte) error {
	g.deliver(msg)
	return nil
}

func (unicastGossiper) OnGossipBroadcast(mesh.PeerName, []byte) (mesh.GossipData, error) {
	return nil, nil
}

func (unicastGossiper) Gossip() mesh.GossipData { return nil }

func (unicastGossiper) OnGossip([]byte) (mesh.GossipData, error) { return nil, nil }
