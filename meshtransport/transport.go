package meshtransport

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/internal/ids"
	"github.com/meshkv/meshkv/internal/peerlink"
	"github.com/meshkv/meshkv/internal/ratelog"
)

// Handler is what the transport calls for inbound raft traffic and send
// outcomes. Step must not block; the Report methods are called from the
// transport's own goroutine, never from inside Send.
type Handler interface {
	Step(m *raftpb.Message)
	ReportUnreachable(id uint64)
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
}

// Peer is one node as the transport sees it.
type Peer struct {
	Name     PeerName
	ID       MemberID
	Key      peerlink.PublicKey
	NickName string
	// Meta is the peer's own signed claim (zero until its gossip entry
	// arrived); Meta.RaftID is always ID.
	Meta Meta
	Self bool
	// Path is how our frames reach it now; Live is Path != PathDead (and
	// always true for ourself).
	Path Path
	Live bool
	// Since is when Path last changed.
	Since time.Time
	// RTT is the link's ping round trip when direct, else the newest
	// answered probe's.
	RTT time.Duration
	// LastRefresh is when we last took a new version of its gossip entry
	// (zero if we hold none); the entry expires at Expires.
	LastRefresh time.Time
	Expires     time.Time
	// Unreachable lists the raft ids the peer says (in its signed entry)
	// it cannot reach.
	Unreachable []MemberID
}

// Transport carries raft messages between meshkv nodes. See the package
// documentation for the contract.
type Transport struct {
	cfg        Config
	log        *slog.Logger
	id         *Identity
	links      Links
	router     Router
	gossip     *gossipState
	pathParams pathParams
	tick       time.Duration
	stats      counters
	reports    *reporter
	memberc    chan MemberMessage

	clusterID atomic.Uint64
	handler   atomic.Pointer[handlerRef]
	byKey     atomic.Pointer[map[peerlink.PublicKey]*peer]
	byID      atomic.Pointer[map[MemberID]*peer]

	inboundc    chan inbound
	inboundHeld atomic.Int64
	changec     chan struct{} // capacity 1, coalesced: Changes
	gossipc     chan struct{} // capacity 1: gossip state changed
	routec      chan struct{} // capacity 1: routes may have changed
	stopc       chan struct{}
	closed      atomic.Bool
	wg          sync.WaitGroup

	nextTransfer atomic.Uint64
	violog       *ratelog.Limiter

	mu        sync.Mutex
	started   bool
	peers     map[peerlink.PublicKey]*peer
	advertise string
	foreign   map[uint64]bool // foreign cluster ids already logged
}

type handlerRef struct{ h Handler }

// New checks cfg and builds a transport (keys, link layer, router) without
// opening sockets; Start does.
func New(cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	id := cfg.Identity
	if id == nil {
		var err error
		if id, err = NewIdentity(); err != nil {
			return nil, err
		}
	}
	fabric := cfg.Fabric
	if fabric == nil {
		fabric = realFabric{}
	}
	tick := min(cfg.ProbeInterval/2, 50*time.Millisecond)
	t := &Transport{
		cfg:        cfg,
		log:        cfg.Logger.With("member", id.RaftID().String(), "nick", cfg.NickName),
		id:         id,
		pathParams: newPathParams(cfg.ProbeInterval, cfg.ProbeFailures, tick),
		tick:       tick,
		reports:    newReporter(),
		memberc:    make(chan MemberMessage, memberQueueLen),
		inboundc:   make(chan inbound, inboundQueueLen),
		changec:    make(chan struct{}, 1),
		gossipc:    make(chan struct{}, 1),
		routec:     make(chan struct{}, 1),
		stopc:      make(chan struct{}),
		violog:     ratelog.New(10 * time.Second),
		peers:      make(map[peerlink.PublicKey]*peer),
		foreign:    make(map[uint64]bool),
	}
	t.byKey.Store(&map[peerlink.PublicKey]*peer{})
	t.byID.Store(&map[MemberID]*peer{})
	t.gossip = newGossipState(id, cfg.EntryTTL, cfg.MaxPeers, func() { signal(t.gossipc); signal(t.changec) })

	var secret *peerlink.ClusterSecret
	if cfg.Password != nil {
		var err error
		if secret, err = peerlink.NewClusterSecret(cfg.Password); err != nil {
			return nil, fmt.Errorf("meshtransport: %w", err)
		}
	}
	lc := cfg.Link
	lc.ListenAddr = cfg.ListenAddr
	lc.AdvertiseAddr = cfg.AdvertiseAddr
	lc.Identity = id.Link()
	lc.ClusterSecret = secret
	lc.ClusterName = cfg.ClusterName
	lc.AppHello = appendHello(nil, id.SealKey())
	lc.Handler = linkHandler{t}
	lc.Authorize = t.authorize
	lc.Logger = cfg.Logger.With("component", "peerlink", "member", id.RaftID().String())
	if lc.MaxDatagram != 0 && lc.MaxDatagram < MaxFrame {
		return nil, fmt.Errorf("%w: link max datagram %d is below the frame size %d", ErrInvalidConfig, lc.MaxDatagram, MaxFrame)
	}
	if lc.MaxDatagram == 0 {
		lc.MaxDatagram = MaxFrame
	}
	links, err := fabric.NewLinks(lc)
	if err != nil {
		return nil, fmt.Errorf("meshtransport: links: %w", err)
	}
	t.links = links
	router, err := fabric.NewRouter(RouterConfig{
		Name:           id.PeerName(),
		NickName:       cfg.NickName,
		OpenStream:     t.openStream,
		Deliver:        t.deliverSealed,
		Gossip:         t.gossip,
		RoutesChanged:  func() { signal(t.routec) },
		GossipInterval: cfg.GossipInterval,
		Logger:         cfg.Logger.With("component", "mesh", "member", id.RaftID().String()),
	})
	if err != nil {
		return nil, fmt.Errorf("meshtransport: router: %w", err)
	}
	t.router = router
	return t, nil
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// openStream opens a stream on a link, for a router that splices its
// connections over links.
func (t *Transport) openStream(peer peerlink.PublicKey) (*peerlink.Stream, error) {
	if n, ok := t.links.(*peerlink.Node); ok {
		return n.OpenStream(peer)
	}
	return nil, peerlink.ErrNoLink
}

// Start binds the link listener and the router's loopback port, starts
// both, dials Config.Peers and starts the transport's goroutines.
func (t *Transport) Start() error {
	if err := t.start(); err != nil {
		return err
	}
	t.publishOwn(func(*entry) {})
	if t.cfg.Password == nil {
		t.log.Warn("mesh running WITHOUT a password: anyone who reaches the mesh port joins the cluster and can read and change all its data",
			"listen", t.links.Addr(), "insecure-allow-anyone", t.cfg.InsecureAllowAnyone)
	}
	t.log.Info("mesh transport started", "listen", t.links.Addr(), "advertise", t.advertise, "peers", t.cfg.Peers,
		"raft_id", t.id.RaftID().String(), "mesh_name", t.id.PeerName().String())
	return nil
}

func (t *Transport) start() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		return ErrStopped
	}
	if t.started {
		return ErrStarted
	}
	if err := t.router.Start(); err != nil {
		return err
	}
	if err := t.links.Start(); err != nil {
		_ = t.router.Close()
		return fmt.Errorf("%w: %w", ErrBind, err)
	}
	t.advertise = t.advertiseAddr()
	if err := t.links.SetTargets(t.cfg.Peers); err != nil {
		_ = t.links.Close()
		_ = t.router.Close()
		return err
	}
	t.started = true
	t.wg.Go(t.monitorLoop)
	t.wg.Go(t.inboundLoop)
	t.wg.Go(t.reportLoop)
	return nil
}

// advertiseAddr is the address we announce in our gossip entry (the link
// layer announces the same one in its hello).
func (t *Transport) advertiseAddr() string {
	if t.cfg.AdvertiseAddr != "" {
		return t.cfg.AdvertiseAddr
	}
	host, _, err := net.SplitHostPort(t.cfg.ListenAddr)
	if err != nil || host == "" {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return ""
	}
	_, port, err := net.SplitHostPort(t.links.Addr())
	if err != nil {
		return ""
	}
	return net.JoinHostPort(host, port)
}

// SetHandler installs the receiver of inbound raft traffic. Inbound raft
// messages arriving while there is none are dropped and counted.
func (t *Transport) SetHandler(h Handler) {
	if h == nil {
		t.handler.Store(nil)
		return
	}
	t.handler.Store(&handlerRef{h: h})
}

func (t *Transport) currentHandler() Handler {
	if r := t.handler.Load(); r != nil {
		return r.h
	}
	return nil
}

// SetClusterID sets the cluster id stamped on every frame we send. Raft,
// chunk and membership frames carrying another non-zero id are dropped,
// counted and logged once per foreign id; 0 (ours or theirs) matches any.
func (t *Transport) SetClusterID(id ids.ClusterID) { t.clusterID.Store(uint64(id)) }

// SetMeta publishes our metadata: it signs a new version of our gossip
// entry and broadcasts it. RaftID and ClusterName are set by the transport.
func (t *Transport) SetMeta(m Meta) {
	m = m.clone()
	t.publishOwn(func(e *entry) {
		e.meta.ClusterID, e.meta.ClientURLs, e.meta.Role, e.meta.App = m.ClusterID, m.ClientURLs, m.Role, m.App
	})
}

// publishOwn re-signs our entry with fill applied and broadcasts it once
// the router runs. Fields beyond their bounds are cut (and logged).
func (t *Transport) publishOwn(fill func(*entry)) {
	t.mu.Lock()
	started := t.started && !t.closed.Load()
	advertise := t.advertise
	t.mu.Unlock()
	d := t.gossip.setOwn(func(e *entry) {
		fill(e)
		e.meta.ClusterName = t.cfg.ClusterName
		e.addr = advertise
		e.nick = t.cfg.NickName
		if err := checkEntryLimits(e); err != nil {
			t.log.Error("metadata over its bounds; not published", "err", err)
			e.meta.ClientURLs, e.meta.App = nil, nil
		}
	})
	if started {
		t.router.Broadcast(d)
	}
}

// Changes is signalled (coalesced, never blocking the transport) when the
// peer set, any peer's metadata, or any path changes. Call Peers to see
// the new state.
func (t *Transport) Changes() <-chan struct{} { return t.changec }

// RaftID is this node's raft id, derived from its key.
func (t *Transport) RaftID() MemberID { return t.id.RaftID() }

// PeerName is our mesh peer name.
func (t *Transport) PeerName() PeerName { return t.id.PeerName() }

// Identity returns our keys.
func (t *Transport) Identity() *Identity { return t.id }

// Addr is the address links are accepted on (after Start: the actual port).
func (t *Transport) Addr() string {
	if a := t.links.Addr(); a != "" {
		return a
	}
	return t.cfg.ListenAddr
}

// peerList returns every peer we track.
func (t *Transport) peerList() []*peer {
	m := *t.byKey.Load()
	out := make([]*peer, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	return out
}

func (t *Transport) peerByKey(k peerlink.PublicKey) *peer { return (*t.byKey.Load())[k] }

func (t *Transport) peerByID(id MemberID) *peer { return (*t.byID.Load())[id] }

// addPeer returns the peer with key k, creating it (and starting its
// sender) if needed; nil when MaxPeers are tracked already or we are
// closed.
func (t *Transport) addPeer(k peerlink.PublicKey) *peer {
	if p := t.peerByKey(k); p != nil {
		return p
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.peers[k]; p != nil {
		return p
	}
	if t.closed.Load() || k == t.id.PublicKey() || !validKey(k) {
		return nil
	}
	if len(t.peers) >= t.cfg.MaxPeers {
		t.stats.drops[dropTooManyPeers].Add(1)
		return nil
	}
	p := newPeer(t, k, time.Now())
	t.peers[k] = p
	t.wg.Go(p.out.run)
	t.republishPeersLocked()
	return p
}

// removePeer forgets p and stops its sender.
func (t *Transport) removePeer(p *peer) {
	t.mu.Lock()
	if t.peers[p.key] == p {
		delete(t.peers, p.key)
		t.republishPeersLocked()
	}
	t.mu.Unlock()
	p.out.stop(true)
}

// republishPeersLocked rebuilds the lock-free lookup maps (t.mu held).
func (t *Transport) republishPeersLocked() {
	byKey := make(map[peerlink.PublicKey]*peer, len(t.peers))
	byID := make(map[MemberID]*peer, len(t.peers))
	for k, p := range t.peers {
		byKey[k] = p
		byID[p.id] = p
	}
	t.byKey.Store(&byKey)
	t.byID.Store(&byID)
}

// Peers lists ourself and every peer we track (a link is up, or its gossip
// entry is live), ordered by raft id.
func (t *Transport) Peers() []Peer {
	now := time.Now()
	live := t.gossip.live()
	self := Peer{Name: t.id.PeerName(), ID: t.id.RaftID(), Key: t.id.PublicKey(), NickName: t.cfg.NickName,
		Self: true, Path: PathDirect, Live: true, Since: now}
	if own := t.gossip.ownEntry(); own != nil {
		self.Meta = own.meta.clone()
		self.Unreachable = slices.Clone(own.unreachable)
	}
	out := []Peer{self}
	for _, p := range t.peerList() {
		row := Peer{Name: p.name, ID: p.id, Key: p.key}
		row.Meta.RaftID = uint64(p.id)
		if h, ok := live[p.name]; ok {
			row.NickName = h.e.nick
			row.Meta = h.e.meta.clone()
			row.Unreachable = slices.Clone(h.e.unreachable)
			row.LastRefresh = h.seen
			row.Expires = h.seen.Add(t.cfg.EntryTTL)
		}
		p.mu.Lock()
		row.Path, row.Since = p.ps.path, p.ps.since
		row.RTT = p.ps.rtt
		if p.ps.link {
			row.RTT = p.linkRTT
		}
		p.mu.Unlock()
		row.Live = row.Path != PathDead
		out = append(out, row)
	}
	slices.SortFunc(out, func(a, b Peer) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// closeGrace bounds how long Close waits for a sender stuck in a router
// write.
const closeGrace = 3 * time.Second

// Close stops the link layer (telling peers), the router and the
// transport's goroutines. It is idempotent.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed.Swap(true) {
		t.mu.Unlock()
		return nil
	}
	started := t.started
	peers := make([]*peer, 0, len(t.peers))
	for _, p := range t.peers {
		peers = append(peers, p)
	}
	t.mu.Unlock()

	close(t.stopc)
	var err error
	if started {
		err = t.links.Close()
	}
	for _, p := range peers {
		p.out.stop(false)
	}
	if rerr := t.router.Close(); err == nil {
		err = rerr
	}
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	timer := time.NewTimer(closeGrace)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		t.log.Warn("a sender is blocked in a router write; not waiting for it")
	}
	t.log.Info("mesh transport closed")
	if errors.Is(err, peerlink.ErrStopped) {
		err = nil
	}
	return err
}
