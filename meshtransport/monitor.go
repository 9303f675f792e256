package meshtransport

import (
	"slices"
	"time"

	"github.com/meshkv/meshkv/internal/peerlink"
)

// unreachablePublishMin spaces out re-signing our entry when only our
// unreachable set changed.
const unreachablePublishMin = 200 * time.Millisecond

// monitorLoop is the monitor goroutine. It owns the path decisions of
// peers without a link (route checks, sealed probes, verdicts), keeps the
// peer set and the dial targets in step with the gossip, refreshes and
// expires gossip entries, and reports configured peers we cannot link to.
func (t *Transport) monitorLoop() {
	ticker := time.NewTicker(t.tick)
	defer ticker.Stop()
	m := &monitor{t: t}
	now := time.Now()
	m.lastRefresh, m.lastExpire, m.lastNoLinkLog = now, now, now
	m.syncGossip(now)
	for {
		select {
		case <-t.stopc:
			return
		case <-t.gossipc:
			m.syncGossip(time.Now())
		case <-t.routec:
			// Senders waiting for a dead link's route to go look again.
			for _, p := range t.peerList() {
				p.out.wake()
			}
		case now := <-ticker.C:
			m.tick(now)
		}
	}
}

// monitor is the monitor goroutine's own state.
type monitor struct {
	t             *Transport
	lastRefresh   time.Time
	lastExpire    time.Time
	lastNoLinkLog time.Time
	lastUnreach   time.Time
	unreachable   []MemberID // as last published
	targets       []string   // as last set
}

// syncGossip adds a peer for every live gossip entry of our cluster, takes
// their sealing keys and recomputes the dial targets.
func (m *monitor) syncGossip(now time.Time) {
	t := m.t
	live := t.gossip.live()
	var discovered []string
	for _, h := range live {
		e := h.e
		if e.meta.ClusterName != t.cfg.ClusterName {
			continue
		}
		p := t.addPeer(e.pub)
		if p == nil {
			continue
		}
		p.setSealKey(e.seal)
		p.mu.Lock()
		p.lastActive = now
		p.mu.Unlock()
		if e.addr != "" && *t.cfg.PeerDiscovery {
			discovered = append(discovered, e.addr)
		}
	}
	slices.Sort(discovered)
	targets := slices.Clone(t.cfg.Peers)
	for _, a := range slices.Compact(discovered) {
		if a != t.advertiseSnapshot() && !slices.Contains(targets, a) {
			targets = append(targets, a)
		}
	}
	if !slices.Equal(targets, m.targets) {
		if err := t.links.SetTargets(targets); err != nil {
			t.log.Warn("cannot dial peers learnt from gossip", "err", err)
			// Fall back to the configured peers; a bad address in one
			// entry must not stop discovery of the others.
			targets = slices.Clone(t.cfg.Peers)
			_ = t.links.SetTargets(targets)
		}
		m.targets = targets
	}
}

func (t *Transport) advertiseSnapshot() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.advertise
}

// tick runs the periodic work.
func (m *monitor) tick(now time.Time) {
	t := m.t
	rtts := make(map[peerlink.PublicKey]time.Duration)
	for _, li := range t.links.Links() {
		rtts[li.Key] = li.RTT
	}
	peers := t.peerList()
	var dead []MemberID
	live := t.gossip.live()
	for _, p := range peers {
		hop, ok := t.router.NextHop(p.name)
		p.mu.Lock()
		p.ps.setRoute(ok && hop != p.name, now)
		r := p.ps.tick(now)
		p.linkRTT = rtts[p.key]
		path := p.ps.path
		p.publishPath()
		p.mu.Unlock()
		if r.probe {
			f := appendHeader(make([]byte, 0, headerLen), t.header(kindProbe, p.id, r.seq))
			if t.sendControl(p, f) {
				t.stats.probesSent.Add(1)
			}
		}
		if r.changed {
			why := "probes unanswered"
			if path == PathDead && !ok {
				why = "no route through the mesh"
			}
			t.pathChanged(p, path, why)
			signal(t.changec)
		}
		if path == PathDead {
			if h, ok := live[p.name]; ok && h.e.meta.ClusterName == t.cfg.ClusterName {
				dead = append(dead, p.id)
			}
		}
	}
	slices.Sort(dead)
	if !slices.Equal(dead, m.unreachable) && now.Sub(m.lastUnreach) >= unreachablePublishMin {
		m.unreachable, m.lastUnreach, m.lastRefresh = dead, now, now
		t.publishOwn(func(e *entry) { e.unreachable = slices.Clone(dead) })
	}
	if now.Sub(m.lastRefresh) >= t.cfg.RefreshInterval {
		m.lastRefresh = now
		t.publishOwn(func(*entry) {})
	}
	if now.Sub(m.lastExpire) >= time.Second {
		m.lastExpire = now
		m.expire(now)
	}
	if now.Sub(m.lastNoLinkLog) >= t.cfg.NoLinkLogEvery {
		m.lastNoLinkLog = now
		m.logMissingLinks(now)
	}
}

// expire drops expired gossip entries, and peers that have had neither a
// link nor a live entry for EntryTTL.
func (m *monitor) expire(now time.Time) {
	t := m.t
	if gone := t.gossip.expire(now); len(gone) > 0 {
		for _, n := range gone {
			t.log.Info("gossip entry expired", "name", n.String())
		}
	}
	live := t.gossip.live()
	for _, p := range t.peerList() {
		_, hasEntry := live[p.name]
		p.mu.Lock()
		if hasEntry || p.ps.link {
			p.lastActive = now
		}
		idle := now.Sub(p.lastActive) > t.cfg.EntryTTL
		p.mu.Unlock()
		if idle {
			t.log.Info("forgetting peer: no link and no live gossip entry", "peer", p.id.String(), "name", p.name.String())
			t.removePeer(p)
			signal(t.changec)
		}
	}
}

// logMissingLinks warns about every configured peer address we have no
// link to, saying why.
func (m *monitor) logMissingLinks(now time.Time) {
	t := m.t
	for _, ti := range t.links.Targets() {
		if ti.Linked || ti.Self || !slices.Contains(t.cfg.Peers, ti.Addr) {
			continue
		}
		why := ti.LastError
		if why == "" {
			why = "no attempt has succeeded yet"
		}
		attrs := []any{"addr", ti.Addr, "why", why}
		if !ti.FailingSince.IsZero() {
			attrs = append(attrs, "failing_for", now.Sub(ti.FailingSince).Round(time.Second).String())
		}
		if ti.HasKey {
			p := t.peerByKey(ti.Key)
			attrs = append(attrs, "peer", RaftIDOf(ti.Key).String())
			if p != nil {
				attrs = append(attrs, "path", p.currentPath().String())
			}
		}
		t.log.Warn("no link to a configured peer", attrs...)
	}
}

// probeReplied applies a probe reply from p.
func (t *Transport) probeReplied(p *peer, seq uint64, now time.Time) {
	p.mu.Lock()
	changed := p.ps.probeReply(seq, now)
	path := p.ps.path
	p.publishPath()
	p.mu.Unlock()
	if changed {
		t.pathChanged(p, path, "probe answered over the mesh")
		signal(t.changec)
	}
}
