package meshtransport

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weaveworks/mesh"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Handler is what the transport calls for inbound raft traffic and send
// outcomes. Step must not block; the Report methods are called from the
// transport's own goroutine, never from inside Send.
type Handler interface {
	Step(m *raftpb.Message)
	ReportUnreachable(id uint64)
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
}

// Peer is one peer as the transport sees it.
type Peer struct {
	Name     string // mesh peer name (random per process start)
	NickName string
	Meta     Meta
	// Live: our own probes (not mesh's failure detector) currently succeed
	// to it, directly or via a detour. Always true for ourself.
	Live bool
	// Via is "" for the direct (mesh-routed) path, or the name of the relay
	// peer carrying our detour to it.
	Via string
	RTT time.Duration // round trip of the newest answered probe (direct path)
	// Self marks ourself.
	Self bool
	// InMesh: mesh currently knows the peer (it is connected, directly or
	// through other peers). A peer that left stays listed with InMesh false,
	// because its gossiped Meta is kept.
	InMesh bool
}

// Transport carries raft messages between meshkv nodes over a Weave Mesh
// network. See the package documentation for the contract.
type Transport struct {
	cfg         Config
	logger      *slog.Logger
	name        mesh.PeerName
	router      *mesh.Router // nil for in-memory test networks
	net         network
	meta        *metaState
	raw         *rawReceiver
	listenHost  string
	listenPort  int
	clusterID   atomic.Uint64
	ownRaft     atomic.Uint64
	handler     atomic.Pointer[handlerRef]
	stats       counters
	transfers   *outTransfers
	reports     *reporter
	inboundc    chan inbound
	inboundHeld atomic.Int64
	changec     chan struct{} // capacity 1, coalesced
	refreshc    chan struct{} // capacity 1: peers or metadata changed
	stopc       chan struct{}
	closed      atomic.Bool
	wg          sync.WaitGroup

	nextTransfer atomic.Uint64

	mu      sync.Mutex
	started bool
	links   map[mesh.PeerName]*link
	dialed  map[string]bool                  // mesh addresses discover dialled; monitor goroutine only
	byRaft  atomic.Pointer[map[uint64]*link] // replaced under mu, read lock-free
	foreign map[uint64]bool                  // foreign cluster ids already logged
}

type handlerRef struct{ h Handler }

// New creates a transport with its mesh router and gossip channels. It does
// not open sockets; call Start.
func New(cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	host, port, err := splitHostPort(cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: listen address %q: %v", ErrInvalidConfig, cfg.ListenAddr, err)
	}
	name, err := randomPeerName()
	if err != nil {
		return nil, err
	}
	t, err := newTransport(cfg, name)
	if err != nil {
		return nil, err
	}
	t.listenHost, t.listenPort = host, port

	gossipInterval := cfg.GossipInterval
	mcfg := mesh.Config{
		Host:               host,
		Port:               port,
		Password:           cfg.Password,
		ProtocolMinVersion: 2,
		PeerDiscovery:      *cfg.PeerDiscovery,
		GossipInterval:     &gossipInterval,
	}
	router, err := mesh.NewRouter(mcfg, name, cfg.NickName, mesh.NullOverlay{}, meshLogger{t.logger})
	if err != nil {
		return nil, fmt.Errorf("meshtransport: create router: %w", err)
	}
	raw, err := router.NewGossip(rawChannel, t.raw)
	if err != nil {
		return nil, fmt.Errorf("meshtransport: register channel: %w", err)
	}
	meta, err := router.NewGossip(metaChannel, t.meta)
	if err != nil {
		return nil, fmt.Errorf("meshtransport: register channel: %w", err)
	}
	t.router = router
	t.net = &meshNetwork{router: router, raw: raw, meta: meta}
	return t, nil
}

// newTransport builds everything but the network.
func newTransport(cfg Config, name mesh.PeerName) (*Transport, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("meshtransport: random incarnation: %w", err)
	}
	t := &Transport{
		cfg:       cfg,
		logger:    cfg.Logger.With("peer", name.String(), "nick", cfg.NickName),
		name:      name,
		transfers: newOutTransfers(),
		inboundc:  make(chan inbound, inboundQueueLen),
		changec:   make(chan struct{}, 1),
		refreshc:  make(chan struct{}, 1),
		stopc:     make(chan struct{}),
		links:     make(map[mesh.PeerName]*link),
		dialed:    make(map[string]bool),
		foreign:   make(map[uint64]bool),
	}
	t.reports = newReporter()
	empty := map[uint64]*link{}
	t.byRaft.Store(&empty)
	own := &metaEntry{
		Incarnation: binary.BigEndian.Uint64(b[:]),
		Version:     1,
		NickName:    cfg.NickName,
		Meta:        Meta{ClusterName: cfg.ClusterName},
	}
	t.meta = newMetaState(name, own, func() {
		signal(t.refreshc)
		signal(t.changec)
	})
	t.raw = &rawReceiver{t: t}
	return t, nil
}

// randomPeerName returns a random non-zero 48-bit mesh peer name.
func randomPeerName() (mesh.PeerName, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[2:]); err != nil {
			return 0, fmt.Errorf("meshtransport: random peer name: %w", err)
		}
		if n := mesh.PeerName(binary.BigEndian.Uint64(b[:])); n != mesh.UnknownPeerName {
			return n, nil
		}
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Start binds the listen address (returning ErrBind instead of letting mesh
// panic), starts the router, connects to the configured peers and starts the
// transport's goroutines.
func (t *Transport) Start() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		return ErrStopped
	}
	if t.started {
		return ErrStarted
	}
	port, err := bindCheck(t.listenHost, t.listenPort)
	if err != nil {
		return err
	}
	t.router.Port = port
	t.listenPort = port
	if ip := net.ParseIP(t.listenHost); t.listenHost != "" && (ip == nil || !ip.IsUnspecified()) {
		t.meta.setAddr(t.addrLocked())
	}
	if err := startRouter(t.router); err != nil {
		return err
	}
	if errs := t.router.ConnectionMaker.InitiateConnections(t.cfg.Peers, false); len(errs) > 0 {
		t.logger.Warn("some peers cannot be dialled", "errors", errs)
	}
	t.router.Routes.OnChange(func() { signal(t.refreshc); signal(t.changec) })
	t.router.Peers.OnGC(func(*mesh.Peer) { signal(t.refreshc); signal(t.changec) })
	t.startLoops()
	t.logger.Info("mesh transport started", "addr", t.addrLocked(), "peers", t.cfg.Peers)
	return nil
}

// startLoops starts the goroutines and announces our metadata; t.mu is held.
func (t *Transport) startLoops() {
	t.started = true
	t.wg.Go(t.monitorLoop)
	t.wg.Go(t.inboundLoop)
	t.wg.Go(t.reportLoop)
	t.net.broadcast(t.meta.ownData())
}

// bindCheck proves the address can be bound (mesh panics if it cannot) and
// turns port 0 into a concrete free port.
func bindCheck(host string, port int) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBind, err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBind, err)
	}
	return port, nil
}

// startRouter starts mesh, turning its bind panic (possible if someone took
// the port since bindCheck) into ErrBind.
func startRouter(r *mesh.Router) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrBind, p)
		}
	}()
	r.Start()
	return nil
}

// SetHandler installs the receiver of inbound raft traffic. It may be called
// at any time; inbound raft messages arriving while there is no handler are
// dropped and counted.
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

// SetClusterID sets the cluster id stamped on every frame we send. Frames
// carrying a different non-zero id are dropped, counted and logged once per
// foreign id; 0 (ours or theirs) means "not known yet" and matches any id.
func (t *Transport) SetClusterID(id uint64) { t.clusterID.Store(id) }

// SetMeta publishes our metadata: it bumps our version and broadcasts it.
// ClusterName is always replaced by Config.ClusterName.
func (t *Transport) SetMeta(m Meta) {
	m.ClusterName = t.cfg.ClusterName
	t.ownRaft.Store(m.RaftID)
	d := t.meta.setOwn(m)
	t.mu.Lock()
	started := t.started && !t.closed.Load()
	t.mu.Unlock()
	if started {
		t.net.broadcast(d)
	}
}

// Changes is signalled (coalesced, never blocking the transport) when the
// peer set, any peer's metadata, or any liveness verdict or route changes.
// Call Peers to see the new state.
func (t *Transport) Changes() <-chan struct{} { return t.changec }

// PeerName is our mesh peer name.
func (t *Transport) PeerName() string { return t.name.String() }

// Addr is the address mesh listens on (after Start: the actual port).
func (t *Transport) Addr() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addrLocked()
}

func (t *Transport) addrLocked() string {
	return net.JoinHostPort(t.listenHost, strconv.Itoa(t.listenPort))
}

// Send queues messages for their destinations and returns at once. A message
// whose destination is unknown, unreachable with no detour, or whose queue
// is full is dropped, counted and reported unreachable (and, for MsgSnap,
// as a failed snapshot); reports are delivered from another goroutine.
func (t *Transport) Send(msgs []*raftpb.Message) {
	if t.closed.Load() {
		t.stats.droppedClosed.Add(uint64(len(msgs)))
		return
	}
	byRaft := *t.byRaft.Load()
	var wakeBuf [8]*link
	wake := wakeBuf[:0]
	defer func() {
		for _, l := range wake {
			l.wake()
		}
	}()
	for _, m := range msgs {
		l := byRaft[m.GetTo()]
		if l == nil {
			t.drop(m, &t.stats.droppedNoRoute)
			continue
		}
		// A dead route with a detour goes through the relay. With no detour
		// the message still goes the direct way, and raft hears that the
		// peer is suspect: the probes may be wrong (a starved CPU misses
		// replies), and dropping would cut raft off for sure where trying
		// costs at most this peer's queue.
		owner := l
		if r := l.route.Load(); r.dead {
			if r.relay != nil {
				owner = r.relay
			} else {
				t.stats.suspect.Add(1)
				t.reports.unreachable(m.GetTo())
			}
		}
		if !owner.push(outItem{dst: l, msg: m}) {
			t.drop(m, &t.stats.droppedQueueFull)
			continue
		}
		if !slices.Contains(wake, owner) {
			wake = append(wake, owner)
		}
	}
}

// drop counts a message that will not be sent and tells raft.
func (t *Transport) drop(m *raftpb.Message, counter *atomic.Uint64) {
	counter.Add(1)
	if m.GetType() == raftpb.MsgSnap {
		t.reports.snapshot(m.GetTo(), raft.SnapshotFailure)
	}
	t.reports.unreachable(m.GetTo())
}

func (t *Transport) failTransfer(id uint64) {
	if res, ok := t.transfers.finish(id, mesh.UnknownPeerName, false); ok {
		t.reportTransfer(res)
	}
}

func (t *Transport) reportTransfer(res transferResult) {
	switch {
	case res.ok && res.snap:
		t.stats.snapshotsSent.Add(1)
		t.reports.snapshot(res.raftTo, raft.SnapshotFinish)
	case res.ok:
	case res.snap:
		t.stats.transfersFailed.Add(1)
		t.reports.snapshot(res.raftTo, raft.SnapshotFailure)
		t.reports.unreachable(res.raftTo)
	default:
		t.stats.transfersFailed.Add(1)
		t.reports.unreachable(res.raftTo)
	}
}

// Peers lists every peer seen (mesh's peer list merged with gossiped
// metadata and our probes), ourself included and marked, sorted by name.
func (t *Transport) Peers() []Peer {
	descs := t.net.peers()
	metas := t.meta.snapshot()
	type row struct {
		nick   string
		inMesh bool
	}
	rows := make(map[mesh.PeerName]*row)
	for _, d := range descs {
		rows[d.Name] = &row{nick: d.NickName, inMesh: true}
	}
	for n, e := range metas {
		if _, ok := rows[n]; !ok {
			rows[n] = &row{nick: e.NickName}
		}
	}
	rows[t.name] = &row{nick: t.cfg.NickName, inMesh: true}

	t.mu.Lock()
	links := make(map[mesh.PeerName]*link, len(t.links))
	for n, l := range t.links {
		links[n] = l
	}
	t.mu.Unlock()

	out := make([]Peer, 0, len(rows))
	for n, r := range rows {
		p := Peer{Name: n.String(), NickName: r.nick, InMesh: r.inMesh, Self: n == t.name}
		if e, ok := metas[n]; ok {
			p.Meta = e.Meta.clone()
			if p.NickName == "" {
				p.NickName = e.NickName
			}
		}
		if p.Self {
			p.Live = true
		} else if l := links[n]; l != nil {
			st, rtt := l.liveness()
			p.RTT = rtt
			switch r := l.route.Load(); {
			case st == stateAlive:
				p.Live = true
			case r.dead && r.relay != nil:
				p.Live = true
				p.Via = r.relay.peer.String()
			}
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// liveSet lists the peers our probes currently find alive; probe replies
// carry it so that others can pick us as a relay.
func (t *Transport) liveSet() []mesh.PeerName {
	t.mu.Lock()
	links := make([]*link, 0, len(t.links))
	for _, l := range t.links {
		links = append(links, l)
	}
	t.mu.Unlock()
	var out []mesh.PeerName
	for _, l := range links {
		if st, _ := l.liveness(); st == stateAlive {
			out = append(out, l.peer)
		}
	}
	return out
}

func (t *Transport) link(n mesh.PeerName) *link {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.links[n]
}

// closeGrace bounds how long Close waits for a sender goroutine stuck inside
// a mesh write (mesh has no write deadline, and no way to abort a write).
const closeGrace = 2 * time.Second

// Close stops the transport's goroutines and is idempotent. Mesh's own
// goroutines and listener cannot be stopped (mesh has no API for it): they
// linger until the process exits, and every callback they make into a
// closed transport is ignored. A sender goroutine blocked in a mesh write
// to a silently dead path is not waited for beyond closeGrace; it exits when
// mesh gives up on that connection.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed.Swap(true) {
		t.mu.Unlock()
		return nil
	}
	links := t.links
	t.links = map[mesh.PeerName]*link{}
	started := t.started
	t.mu.Unlock()

	close(t.stopc)
	for _, l := range links {
		l.stop(false)
	}
	done := make(chan struct{})
	go func() { // exits as soon as the last goroutine does
		t.wg.Wait()
		close(done)
	}()
	timer := time.NewTimer(closeGrace)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		t.logger.Warn("a sender is blocked in a mesh write; not waiting for it")
	}
	if started && t.router != nil {
		_ = t.router.Stop()
	}
	t.logger.Info("mesh transport closed")
	return nil
}
