package meshtransport

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/weaveworks/mesh"
	"go.etcd.io/raft/v3"
)

// monitorLoop is the monitor goroutine. It owns the link set (creating a link
// and its sender for every peer of our cluster name, stopping links of peers
// that left), the raft id map, the probe rounds, the route of every link, and
// the expiry of unacknowledged transfers.
func (t *Transport) monitorLoop() {
	tick := time.NewTicker(t.cfg.ProbeInterval)
	defer tick.Stop()
	t.refresh()
	for {
		select {
		case <-t.stopc:
			return
		case <-t.refreshc:
			t.refresh()
		case now := <-tick.C:
			t.refresh()
			t.probeRound(now)
		}
	}
}

// refresh reconciles the links with mesh's peer list and the gossiped
// metadata, and rebuilds the raft id -> peer map from Meta.RaftID.
func (t *Transport) refresh() {
	descs := t.net.peers()
	metas := t.meta.snapshot()
	want := make(map[mesh.PeerName]bool)
	for _, d := range descs {
		if d.Name == t.name {
			continue
		}
		if e, ok := metas[d.Name]; ok && e.Meta.ClusterName == t.cfg.ClusterName {
			want[d.Name] = true
		}
	}

	t.mu.Lock()
	if t.closed.Load() {
		t.mu.Unlock()
		return
	}
	var added []mesh.PeerName
	var removed []*link
	for n := range want {
		if _, ok := t.links[n]; !ok {
			l := newLink(t, n)
			t.links[n] = l
			t.wg.Go(l.run)
			added = append(added, n)
		}
	}
	for n, l := range t.links {
		if !want[n] {
			delete(t.links, n)
			removed = append(removed, l)
		}
	}
	byRaft := make(map[uint64]*link, len(t.links))
	for n, l := range t.links {
		id := metas[n].Meta.RaftID
		l.raftID.Store(id)
		if id == 0 {
			continue
		}
		if other, dup := byRaft[id]; dup {
			t.logger.Error("two peers claim one raft id; using the lower peer name",
				"raft_id", id, "peer", n.String(), "other", other.peer.String())
			if other.peer < n {
				continue
			}
		}
		byRaft[id] = l
	}
	mapChanged := !maps.Equal(*t.byRaft.Load(), byRaft)
	if mapChanged {
		t.byRaft.Store(&byRaft)
	}
	t.mu.Unlock()
	t.discover(metas)

	gone := make(map[mesh.PeerName]bool)
	for _, l := range removed {
		l.stop(true)
		gone[l.peer] = true
		t.logger.Info("peer left", "to", l.peer.String())
	}
	for _, n := range added {
		t.logger.Info("peer joined", "to", n.String(), "raft_id", metas[n].Meta.RaftID)
	}
	if len(gone) > 0 {
		for _, res := range t.transfers.expire(time.Now(), gone) {
			t.reportTransfer(res)
		}
	}
	if len(added) > 0 || len(removed) > 0 || mapChanged {
		signal(t.changec)
	}
}

// discover dials every peer of our cluster that gossips a mesh address and
// is not connected to us directly, once per address (mesh keeps retrying
// it). Mesh's own discovery dials the addresses its neighbours see, with our
// port, so without this peers on other ports only ever reach each other
// through a third peer, which then carries all their traffic.
func (t *Transport) discover(metas map[mesh.PeerName]*metaEntry) {
	if !*t.cfg.PeerDiscovery {
		return
	}
	for name, e := range metas {
		if name == t.name || e.Addr == "" || e.Meta.ClusterName != t.cfg.ClusterName || t.dialed[e.Addr] || t.net.direct(name) {
			continue
		}
		t.dialed[e.Addr] = true
		if err := t.net.dial(e.Addr); err != nil {
			t.logger.Warn("cannot dial a peer learnt from gossip", "to", name.String(), "addr", e.Addr, "err", err)
			continue
		}
		t.logger.Info("dialling a peer learnt from gossip", "to", name.String(), "addr", e.Addr)
	}
}

// probeRound closes one probe round for every link, then re-decides every
// link's route: direct unless probes call it dead, else a detour through
// the best live relay that reports the destination live, else none.
func (t *Transport) probeRound(now time.Time) {
	t.mu.Lock()
	links := make(map[mesh.PeerName]*link, len(t.links))
	maps.Copy(links, t.links)
	t.mu.Unlock()
	names := slices.Sorted(maps.Keys(links))

	changed := false
	for _, n := range names {
		if links[n].tickProbe(now) {
			changed = true
			t.logger.Warn("peer unreachable directly: probes unanswered", "to", n.String(),
				"missed", t.cfg.ProbeFailures, "interval", t.cfg.ProbeInterval)
		}
	}

	for _, n := range names {
		l := links[n]
		st, _ := l.liveness()
		old := l.route.Load()
		next := directRoute
		if st == stateDead {
			cands := make([]relayCandidate, 0, len(links)-1)
			for _, o := range names {
				if o != n {
					cands = append(cands, links[o].candidate(n))
				}
			}
			cur := mesh.UnknownPeerName
			if old.relay != nil {
				cur = old.relay.peer
			}
			next = &routeInfo{dead: true, relay: links[chooseRelay(cur, cands)]}
		}
		if old.dead == next.dead && old.relay == next.relay {
			continue
		}
		l.route.Store(next)
		changed = true
		switch {
		case !next.dead:
		case next.relay != nil:
			t.logger.Warn("detouring through a relay", "to", n.String(), "via", next.relay.peer.String())
		default:
			t.logger.Warn("no route and no detour", "to", n.String())
		}
	}
	// Transfers end by acknowledgement, by deadline, or when their peer
	// leaves the mesh (updateLinks): a dead route with no detour still
	// sends the direct way, so its chunks may well arrive.
	for _, res := range t.transfers.expire(now, nil) {
		t.reportTransfer(res)
	}
	if changed {
		signal(t.changec)
	}
}

// reporter collects outcomes for the handler so that they are reported from
// our own goroutine, never from inside Send (the raft loop).
type reporter struct {
	mu      sync.Mutex
	unreach map[uint64]struct{} // coalesced
	snaps   []snapReport
	dropped uint64
	wakec   chan struct{}
}

type snapReport struct {
	to     uint64
	status raft.SnapshotStatus
}

// maxSnapReports bounds pending snapshot reports; raft has at most one
// snapshot in flight per follower, so this is never reached in practice.
const maxSnapReports = 4096

func newReporter() *reporter {
	return &reporter{unreach: make(map[uint64]struct{}), wakec: make(chan struct{}, 1)}
}

func (r *reporter) unreachable(id uint64) {
	if id == 0 {
		return
	}
	r.mu.Lock()
	r.unreach[id] = struct{}{}
	r.mu.Unlock()
	signal(r.wakec)
}

func (r *reporter) snapshot(id uint64, st raft.SnapshotStatus) {
	r.mu.Lock()
	if len(r.snaps) < maxSnapReports {
		r.snaps = append(r.snaps, snapReport{to: id, status: st})
	} else {
		r.dropped++
	}
	r.mu.Unlock()
	signal(r.wakec)
}

func (r *reporter) take() ([]snapReport, []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	snaps := r.snaps
	r.snaps = nil
	ids := slices.Sorted(maps.Keys(r.unreach))
	clear(r.unreach)
	return snaps, ids
}

// reportLoop is the reporter goroutine: it hands collected outcomes to the
// handler (discarding them while there is none).
func (t *Transport) reportLoop() {
	for {
		select {
		case <-t.stopc:
			return
		case <-t.reports.wakec:
		}
		snaps, ids := t.reports.take()
		h := t.currentHandler()
		if h == nil {
			continue
		}
		for _, s := range snaps {
			h.ReportSnapshot(s.to, s.status)
		}
		for _, id := range ids {
			h.ReportUnreachable(id)
		}
	}
}
