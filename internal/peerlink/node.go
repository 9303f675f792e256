package peerlink

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/meshkv/meshkv/internal/ratelog"
)

// Node owns a listener, a set of dial targets and at most one live link per
// peer key. See the package documentation for the contract.
type Node struct {
	cfg       Config
	id        *Identity
	log       *slog.Logger
	serverTLS *tls.Config
	clientTLS *tls.Config
	live      liveParams
	adm       *admission
	hsLog     *ratelog.Limiter // handshake failures, per source or target
	stats     counters
	epoch     time.Time

	// dialFn and listenFn open connections; tests replace them with
	// in-memory ones.
	dialFn   func(ctx context.Context, addr string) (net.Conn, error)
	listenFn func(ctx context.Context, addr string) (net.Listener, error)

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.RWMutex
	started   bool
	closed    bool
	ln        net.Listener
	advertise string
	links     map[PublicKey]*link
	plan      *dialPlan
	history   map[PublicKey]peerHistory
	self      map[string]bool
	failing   map[string]bool // targets whose last attempt failed (for logging)
}

// maxHistory bounds the per-peer liveness history kept without a link.
const maxHistory = 4096

// New checks cfg and builds a Node; Start brings it up.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cert, err := leafCertificate(cfg.Identity, cfg.ClusterSecret, time.Now())
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:   cfg,
		id:    cfg.Identity,
		log:   cfg.Logger,
		epoch: time.Now(),
		live: liveParams{
			pingInterval: cfg.PingInterval,
			deadMin:      cfg.DeadAfter,
			deadMax:      cfg.DeadAfterMax,
			tick:         max(cfg.PingInterval/2, time.Millisecond),
		},
		adm:       newAdmission(cfg.SourceHandshakes, cfg.SourceRate, cfg.SourceBurst, cfg.MaxHandshakes),
		hsLog:     ratelog.New(10 * time.Second),
		advertise: cfg.AdvertiseAddr,
		links:     make(map[PublicKey]*link),
		history:   make(map[PublicKey]peerHistory),
		self:      make(map[string]bool),
		failing:   make(map[string]bool),
	}
	n.serverTLS, n.clientTLS = tlsConfigs(cert, cfg.ClusterSecret)
	n.plan = newDialPlan(dialParams{
		interval:     cfg.RedialInterval,
		max:          cfg.RedialMax,
		backoffAfter: cfg.BackoffAfter,
		maxInFlight:  3,
	})
	dialer := &net.Dialer{KeepAlive: -1}
	n.dialFn = func(ctx context.Context, addr string) (net.Conn, error) {
		return dialer.DialContext(ctx, "tcp", addr)
	}
	lc := &net.ListenConfig{KeepAlive: -1}
	n.listenFn = func(ctx context.Context, addr string) (net.Listener, error) {
		return lc.Listen(ctx, "tcp", addr)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if cfg.ClusterSecret == nil {
		n.log.Warn("peerlink: no cluster secret: any peer that reaches us is admitted (links are still encrypted)")
	} else if cfg.ClusterSecret.weak {
		n.log.Warn("peerlink: cluster secret is shorter than 16 bytes; use a long random one")
	}
	return n, nil
}

// Start binds the listen address (if any) and starts the Node's goroutines.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		return ErrStopped
	case n.started:
		return ErrStarted
	}
	if n.cfg.ListenAddr != "" {
		ln, err := n.listenFn(n.ctx, n.cfg.ListenAddr)
		if err != nil {
			return fmt.Errorf("peerlink: listen on %q: %w", n.cfg.ListenAddr, err)
		}
		n.ln = ln
		addr := ln.Addr().String()
		n.self[addr] = true
		if n.advertise == "" {
			if host, _, err := splitHostPort(n.cfg.ListenAddr); err == nil && host != "" {
				if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
					_, port, _ := net.SplitHostPort(addr)
					n.advertise = net.JoinHostPort(host, port)
				}
			}
		}
		n.wg.Go(func() { n.acceptLoop(ln) })
	}
	if n.advertise != "" {
		n.self[n.advertise] = true
		n.plan.set(slices.Clone(n.plan.order), func(a string) bool { return n.self[a] })
	}
	n.started = true
	n.wg.Go(n.clockLoop)
	return nil
}

// Close closes every link (telling peers), stops listening and dialling,
// and waits for all of the Node's goroutines. Handler.OnLinkDown is called
// for each link before Close returns. Close is idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		n.wg.Wait()
		return nil
	}
	n.closed = true
	ln := n.ln
	links := make([]*link, 0, len(n.links))
	for _, l := range n.links {
		links = append(links, l)
	}
	n.mu.Unlock()
	n.cancel()
	var err error
	if ln != nil {
		err = ln.Close()
	}
	for _, l := range links {
		l.close(ErrShutdown, closeShutdown, "node shutting down")
	}
	n.wg.Wait()
	return err
}

// Addr returns the listener's address, or "" without a listener.
func (n *Node) Addr() string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.ln == nil {
		return ""
	}
	return n.ln.Addr().String()
}

// PublicKey returns this node's key.
func (n *Node) PublicKey() PublicKey { return n.id.pub }

// SetTargets replaces the addresses (HOST:PORT) the Node keeps a link to.
// A target is dialled while no link to the key last seen there is up. An
// invalid address makes SetTargets return an error and change nothing.
// Links are per peer, not per address: removing a target does not close
// its link.
func (n *Node) SetTargets(addrs []string) error {
	for _, a := range addrs {
		host, port, err := splitHostPort(a)
		if err != nil || host == "" || port == 0 {
			return fmt.Errorf("%w: target %q: want HOST:PORT with a non-zero port", ErrInvalidConfig, a)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.plan.set(addrs, func(a string) bool { return n.self[a] })
	// A new target may be where a linked peer says it listens: do not dial
	// it while that link is up (the duplicate could replace the link).
	for _, l := range n.links {
		if l.info.AdvertiseAddr != "" {
			n.plan.learn(l.info.AdvertiseAddr, l.peer)
		}
	}
	for a := range n.failing {
		if n.plan.targets[a] == nil {
			delete(n.failing, a)
		}
	}
	return nil
}

// Send queues data for the peer and returns at once: false when there is no
// live link to peer, its queue is full, or data is larger than the link
// allows (Config.MaxDatagram of either side). data must not be modified
// after a true return: the link keeps it until the peer acknowledges it or
// hands it back in Handler.OnLinkDown.
func (n *Node) Send(peer PublicKey, data []byte) bool {
	n.mu.RLock()
	l := n.links[peer]
	n.mu.RUnlock()
	if l == nil || !l.send(data) {
		n.stats.dgRefused.Add(1)
		return false
	}
	n.stats.dgSent.Add(1)
	return true
}

// OpenStream opens a new stream to peer on its live link.
func (n *Node) OpenStream(peer PublicKey) (*Stream, error) {
	n.mu.RLock()
	l := n.links[peer]
	n.mu.RUnlock()
	if l == nil {
		return nil, ErrNoLink
	}
	return l.openStream()
}

// TargetInfo describes one dial target (see SetTargets).
type TargetInfo struct {
	Addr   string
	Key    PublicKey // the key last seen at Addr; valid when HasKey
	HasKey bool
	// Linked: a link to Key is up (whoever dialled it).
	Linked bool
	// Self: the address turned out to be our own; it is not dialled.
	Self bool
	// FailingSince is when the attempts to Addr started failing; zero while
	// they succeed (or none was made yet).
	FailingSince time.Time
	// LastError says why the latest attempt failed ("" after a success).
	LastError string
}

// Targets returns the dial targets in SetTargets order, with their state.
func (n *Node) Targets() []TargetInfo {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]TargetInfo, 0, len(n.plan.order))
	for _, a := range n.plan.order {
		t := n.plan.targets[a]
		ti := TargetInfo{Addr: a, Key: t.key, HasKey: t.hasKey, Self: t.self, FailingSince: t.failingSince, LastError: t.lastErr}
		if t.hasKey {
			l := n.links[t.key]
			ti.Linked = l != nil && !l.isClosing()
		}
		out = append(out, ti)
	}
	return out
}

// Links returns a snapshot of the live links, ordered by peer key.
func (n *Node) Links() []LinkInfo {
	n.mu.RLock()
	links := make([]*link, 0, len(n.links))
	for _, l := range n.links {
		links = append(links, l)
	}
	n.mu.RUnlock()
	out := make([]LinkInfo, 0, len(links))
	for _, l := range links {
		out = append(out, l.snapshot())
	}
	slices.SortFunc(out, func(a, b LinkInfo) int {
		return cmp.Compare(string(a.Key[:]), string(b.Key[:]))
	})
	return out
}

// clock returns the monotonic time since the Node was made, for atomics.
func (n *Node) clock() int64 { return int64(time.Since(n.epoch)) }

func (n *Node) timeAt(c int64) time.Time { return n.epoch.Add(time.Duration(c)) }

// acceptLoop owns the listener: it admits or rejects each connection and
// hands admitted ones to a handshake goroutine.
func (n *Node) acceptLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || n.ctx.Err() != nil {
				return
			}
			// A descriptor shortage or similar: do not spin.
			n.log.Warn("peerlink: accept", "err", err)
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		src := sourceOf(c.RemoteAddr())
		now := time.Now()
		var why string
		switch n.adm.acquire(src, now) {
		case admitted:
			n.wg.Go(func() { n.serveInbound(c, src) })
			continue
		case rejectRate:
			n.stats.rejectedRate.Add(1)
			why = "connection rate of the source"
		case rejectSource:
			n.stats.rejectedSource.Add(1)
			why = "concurrent handshakes of the source"
		case rejectGlobal:
			n.stats.rejectedAll.Add(1)
			why = "concurrent handshakes of all sources"
		}
		abort(c)
		if ok, suppressed := n.hsLog.Allow("limit "+src.String(), now); ok {
			n.log.Warn("peerlink: connection refused before authentication", "source", src.String(),
				"limit", why, "suppressed", suppressed)
		}
	}
}

// abort closes c at once, with a reset where possible, reading nothing.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (n *Node) serveInbound(c net.Conn, src source) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.HandshakeTimeout)
	l, herr := n.handshake(ctx, c, false)
	cancel()
	n.adm.release(src)
	if herr != nil {
		n.handshakeFailed("source "+src.String(), c.RemoteAddr().String(), herr)
		return
	}
	n.stats.handshakesOK.Add(1)
	n.startLink(l)
}

// dial makes one outbound attempt to a target.
func (n *Node) dial(addr string) {
	n.stats.dials.Add(1)
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.DialTimeout)
	defer cancel()
	// The TCP connect gets a shorter bound, so that while a path is
	// silently dead a fresh SYN goes out about every RedialInterval.
	cctx, ccancel := context.WithTimeout(ctx, n.connectTimeout())
	conn, err := n.dialFn(cctx, addr)
	ccancel()
	if err != nil {
		n.dialDone(addr, dialFailed, &handshakeError{reason: failConn, err: err})
		return
	}
	l, herr := n.handshake(ctx, conn, true)
	if herr != nil {
		out := dialFailed
		switch herr.reason {
		case failSelf:
			out = dialSelf
		case failCertificate, failCluster, failUnauthorized, failHello, failTLS, failNotTLS:
			out = dialRefused
		}
		if herr.reason != failSelf && herr.reason != failConn && herr.reason != failTimeout && herr.reason != failClosed {
			n.handshakeFailed("target "+addr, addr, herr)
		} else {
			n.stats.failures[herr.reason].Add(1)
		}
		n.dialDone(addr, out, herr)
		return
	}
	n.stats.handshakesOK.Add(1)
	n.dialDone(addr, dialOK, &handshakeError{key: l.peer, hasKey: true})
	n.startLink(l)
}

// connectTimeout bounds the TCP connect of a dial attempt.
func (n *Node) connectTimeout() time.Duration {
	return min(n.cfg.DialTimeout, 2*n.cfg.RedialInterval)
}

// dialDone feeds an attempt's outcome to the dial plan and logs changes.
func (n *Node) dialDone(addr string, out dialOutcome, e *handshakeError) {
	n.mu.Lock()
	n.plan.result(addr, time.Now(), out, e.key, e.hasKey)
	t := n.plan.targets[addr]
	if t != nil && out != dialOK && e.err != nil {
		t.lastErr = e.err.Error()
	}
	isTarget := t != nil
	if t != nil && out != dialOK && t.hasKey && n.links[t.key] != nil {
		isTarget = false // a late failure of an attempt to a linked peer: nothing to report
	}
	wasFailing := n.failing[addr]
	switch out {
	case dialOK:
		delete(n.failing, addr)
	case dialSelf:
		n.self[addr] = true
		delete(n.failing, addr)
	default:
		if isTarget {
			n.failing[addr] = true
		}
	}
	n.mu.Unlock()
	if out != dialOK {
		n.stats.dialsFailed.Add(1)
		n.log.Debug("peerlink: dial attempt failed", "target", addr, "err", e.err)
	}
	switch {
	case out == dialSelf:
		n.log.Info("peerlink: target is ourselves; not dialling it again", "target", addr)
	case out == dialOK && wasFailing:
		n.log.Info("peerlink: target reachable again", "target", addr, "peer", e.key)
	case out == dialFailed && !wasFailing && isTarget:
		n.log.Info("peerlink: cannot reach target; retrying", "target", addr, "err", e.err)
	}
}

// handshakeFailed counts and logs a failed handshake, at most one line per
// key per 10s.
func (n *Node) handshakeFailed(key, remote string, e *handshakeError) {
	n.stats.failures[e.reason].Add(1)
	level := slog.LevelWarn
	if e.reason == failSelf || e.reason == failClosed {
		level = slog.LevelDebug
	}
	ok, suppressed := n.hsLog.Allow(key, time.Now())
	if !ok {
		return
	}
	attrs := []any{"remote", remote, "reason", e.reason.String(), "err", e.err}
	if e.hasKey {
		attrs = append(attrs, "peer", e.key)
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	n.log.Log(context.Background(), level, "peerlink: handshake failed", attrs...)
}

// startLink registers a new link, resolving duplicates, and runs it on the
// calling goroutine until it is down.
func (n *Node) startLink(l *link) {
	now := time.Now()
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		l.refuse(closeShutdown, "node shutting down")
		return
	}
	cur := n.links[l.peer]
	if cur != nil && !cur.isClosing() && cur.ranksBefore(l) {
		n.mu.Unlock()
		n.stats.duplicates.Add(1)
		n.log.Debug("peerlink: duplicate link refused", "peer", l.peer, "remote", l.info.RemoteAddr)
		l.refuse(closeDuplicate, "duplicate link; keeping the one dialled by "+cur.rankKey.String())
		return
	}
	l.prev = cur
	l.since = now
	l.lastRecv.Store(n.clock())
	hist := n.history[l.peer]
	if cur != nil {
		// A duplicate replaces a live link (after a dead verdict both ends
		// redial at once, and several attempts may be in flight): it takes
		// over what that link learnt, its penalty above all, so that the
		// churn does not reset the hysteresis.
		hist = cur.history(now)
	}
	l.live = newLiveness(n.live, hist, now)
	delete(n.history, l.peer)
	n.links[l.peer] = l
	if l.info.AdvertiseAddr != "" {
		n.plan.learn(l.info.AdvertiseAddr, l.peer)
	}
	n.mu.Unlock()
	if cur != nil && !cur.isClosing() {
		n.stats.duplicates.Add(1)
		cur.close(fmt.Errorf("%w: replaced by a link dialled by %v", ErrDuplicate, l.rankKey), closeDuplicate,
			"duplicate link; keeping the one dialled by "+l.rankKey.String())
	}
	n.stats.linksUp.Add(1)
	n.log.Info("peerlink: link up", "peer", l.peer, "remote", l.info.RemoteAddr, "dialled", l.info.Dialled,
		"advertise", l.info.AdvertiseAddr)
	l.run()
}

// unregister forgets a link after its OnLinkDown and redials its targets.
func (n *Node) unregister(l *link, hist peerHistory) {
	n.mu.Lock()
	if n.links[l.peer] == l {
		delete(n.links, l.peer)
		if !hist.faded() && len(n.history) < maxHistory {
			n.history[l.peer] = hist
		}
	}
	n.plan.linkDown(l.peer)
	n.mu.Unlock()
	n.kickDials(time.Now())
}

// kickDials starts the attempts the dial plan says are due.
func (n *Node) kickDials(now time.Time) {
	n.mu.Lock()
	if n.closed || !n.started {
		n.mu.Unlock()
		return
	}
	due := n.plan.due(now, func(k PublicKey) bool {
		l := n.links[k]
		return l != nil && !l.isClosing()
	})
	n.mu.Unlock()
	for _, a := range due {
		n.wg.Go(func() { n.dial(a) })
	}
}

// clockLoop drives liveness and redials every tick and prunes the
// admission and logging tables every second.
func (n *Node) clockLoop() {
	t := time.NewTicker(n.live.tick)
	defer t.Stop()
	lastPrune := time.Now()
	var links []*link
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		links = links[:0]
		n.mu.RLock()
		for _, l := range n.links {
			links = append(links, l)
		}
		n.mu.RUnlock()
		for _, l := range links {
			l.tick(now)
		}
		clear(links)
		n.kickDials(now)
		if now.Sub(lastPrune) >= time.Second {
			lastPrune = now
			n.adm.prune(now)
			n.hsLog.Prune(now)
			n.mu.Lock()
			for k, h := range n.history {
				h.decay(now)
				if h.faded() {
					delete(n.history, k)
				} else {
					n.history[k] = h
				}
			}
			n.mu.Unlock()
		}
	}
}
