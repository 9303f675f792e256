package meshkv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshkv/meshkv/internal/bootstrap"
	"github.com/meshkv/meshkv/internal/ids"
	"github.com/meshkv/meshkv/meshtransport"
	"github.com/meshkv/meshkv/raftadapter"
)

// Timing of the mesh membership loop.
const (
	membershipInterval = 100 * time.Millisecond
	// bootstrapSettle is how long a new node listens to the mesh before it may
	// found a cluster, so that gossip from an existing cluster arrives first.
	// A node with no peers to wait for (no --peers, initial cluster size 1)
	// forms its cluster at once: nothing it could hear would change that.
	bootstrapSettle = time.Second
	// promiseRelease is how long a bootstrap promise outlives a vanished
	// founder (see internal/bootstrap).
	promiseRelease = 30 * time.Second
	// confChangeTimeout bounds one membership change.
	confChangeTimeout = 5 * time.Second
)

// Roles gossiped in the mesh metadata.
const (
	roleSeeking = "seeking"
	roleJoining = "joining"
	roleVoter   = "voter"
	roleLearner = "learner"
	roleLeaving = "leaving"
)

// peerMeta is what the node knows of another member from the mesh.
type peerMeta struct {
	name       string
	clientURLs []string
}

// membership runs the node's mesh side: it publishes this node's metadata,
// runs the bootstrap protocol until the node is in a cluster, and afterwards,
// on the leader, adds members that join through the mesh (as learners) and
// promotes caught-up learners up to the target voter count. Membership
// changes only through raft conf changes, never by copying the mesh's peer
// list: a partition or a crash never evicts anyone.
//
// It owns one goroutine (run), stopped when the node's context ends.
type membership struct {
	n    *Node
	boot *bootstrap.Bootstrapper
	done chan struct{}

	deadSince     map[uint64]time.Time // members our probes cannot reach, since when (leader only)
	excludedSince time.Time            // since when the leader's gossiped membership lacks us
	status        raftadapter.Status   // our raft status as of the last step
	leaving       atomic.Bool          // set by Close: announce it and stop acting as leader

	mu       sync.Mutex
	known    map[uint64]peerMeta // by raft id, from gossip
	conflict []uint64            // other cluster ids seen under our name
	lastMeta meshtransport.Meta
}

// startMesh starts the mesh transport and the membership loop; raft starts
// when the bootstrap protocol decides.
func (n *Node) startMesh() error {
	tr, err := meshtransport.New(meshtransport.Config{
		ListenAddr:          n.cfg.MeshListen,
		Peers:               n.cfg.Peers,
		PeerDiscovery:       new(!n.cfg.DisablePeerDiscovery),
		Password:            n.cfg.MeshPassword,
		InsecureAllowAnyone: n.cfg.MeshInsecureAllowAnyone,
		Identity:            n.ident,
		NickName:            n.cfg.Name,
		ClusterName:         n.cfg.ClusterName,
		Logger:              n.cfg.Logger.With("component", "mesh"),
	})
	if err != nil {
		return fmt.Errorf("meshkv: mesh: %w", err)
	}
	if err := tr.Start(); err != nil {
		return fmt.Errorf("meshkv: mesh: %w", err)
	}
	n.mesh = tr
	m := &membership{
		n: n,
		boot: bootstrap.New(n.id, bootstrap.Config{
			InitialClusterSize: n.cfg.InitialClusterSize,
			Settle:             n.settle(),
			ReleaseAfter:       promiseRelease,
			NeedPeer:           len(n.cfg.Peers) > 0,
			Nonce:              rand.Uint64,
		}, time.Now()),
		done:      make(chan struct{}),
		known:     map[uint64]peerMeta{},
		deadSince: map[uint64]time.Time{},
	}
	n.members = m
	m.publish(roleSeeking)
	go m.run()
	return nil
}

// settle is how long this node listens before it may found a cluster.
func (n *Node) settle() time.Duration {
	if len(n.cfg.Peers) == 0 && n.cfg.InitialClusterSize <= 1 {
		return 0
	}
	return bootstrapSettle
}

func (m *membership) wait() { <-m.done }

func (m *membership) run() {
	defer close(m.done)
	t := time.NewTicker(membershipInterval)
	defer t.Stop()
	for {
		select {
		case <-m.n.ctx.Done():
			return
		case <-m.n.mesh.Changes():
		case <-t.C:
		}
		m.step()
	}
}

// step is one round of the loop: read the mesh, advance the bootstrap, or
// act as leader.
func (m *membership) step() {
	n := m.n
	peers := n.mesh.Peers()
	var view []bootstrap.Peer
	known := map[uint64]peerMeta{}
	var leaderTerm uint64      // the highest term a peer claims to lead in
	var leaderMembers []uint64 // that leader's membership
	self := n.mesh.PeerName()
	for _, p := range peers {
		if p.Name == self || p.Meta.ClusterName != n.cfg.ClusterName || p.Meta.RaftID == 0 {
			continue
		}
		known[p.Meta.RaftID] = peerMeta{name: p.NickName, clientURLs: p.Meta.ClientURLs}
		app, err := decodeAppState(p.Meta.App)
		if err != nil {
			continue
		}
		view = append(view, bootstrap.Peer{State: app.Boot})
		if app.Leader && p.Meta.ClusterID == n.clusterID.Load() && app.Term >= leaderTerm {
			leaderTerm, leaderMembers = app.Term, app.Members
		}
	}

	d, decided := m.boot.Step(time.Now(), view)
	m.mu.Lock()
	m.known = known
	if !slices.Equal(m.conflict, d.Conflict) && len(d.Conflict) > 0 {
		n.log.Error("another cluster with the same name is on the mesh; it is not merged",
			"cluster-name", n.cfg.ClusterName, "ours", fmt.Sprintf("%x", n.clusterID.Load()), "others", fmt.Sprintf("%x", d.Conflict))
	}
	m.conflict = d.Conflict
	m.mu.Unlock()

	if decided {
		m.enter(d)
	}
	rn := n.raft.Load()
	if rn == nil {
		m.publish(roleSeeking)
		return
	}
	st := rn.Status()
	if st.Removed && !m.leaving.Load() {
		n.fail(fmt.Errorf("%w: this member was removed from cluster %x", ErrRemoved, n.clusterID.Load()))
		return
	}
	if m.removedBehindOurBack(st, leaderTerm, leaderMembers) {
		n.fail(fmt.Errorf("%w: the leader of cluster %x no longer lists this member (removed while it was cut off)", ErrRemoved, n.clusterID.Load()))
		return
	}
	m.status = st
	role := roleJoining
	switch {
	case m.leaving.Load():
		role = roleLeaving
	case slices.Contains(st.Voters, n.id):
		role = roleVoter
	case slices.Contains(st.Learners, n.id):
		role = roleLearner
	}
	m.publish(role)
	if st.IsLeader && !m.leaving.Load() {
		m.lead(rn, st, peers)
	}
}

// leave announces that this member is leaving, hands leadership over if it
// leads, and waits (bounded by ctx) until the leader has removed it, so that
// the cluster does not wait DeadMemberTimeout to replace it. A lone voter
// just stops.
func (m *membership) leave(ctx context.Context) {
	n := m.n
	rn := n.raft.Load()
	if rn == nil {
		return
	}
	st := rn.Status()
	if st.Removed || len(st.Voters)+len(st.Learners) <= 1 || (len(st.Voters) == 1 && st.Voters[0] == n.id) {
		return
	}
	m.leaving.Store(true) // the loop announces it within a step
	if st.IsLeader {
		if to := mostCaughtUpVoter(st, n.id); to != 0 {
			if err := rn.TransferLeadership(ctx, to); err != nil {
				n.log.Warn("leadership transfer before leaving failed", "to", fmt.Sprintf("%x", to), "err", err)
			}
		}
	}
	t := time.NewTicker(membershipInterval)
	defer t.Stop()
	for !rn.Status().Removed {
		select {
		case <-ctx.Done():
			n.log.Warn("left without being removed; the leader will remove this member after the dead-member timeout")
			return
		case <-t.C:
		}
	}
	n.log.Info("left the cluster")
}

// mostCaughtUpVoter returns the voter other than self with the highest match
// index (0 if none).
func mostCaughtUpVoter(st raftadapter.Status, self uint64) uint64 {
	var best, match uint64
	for _, id := range st.Voters {
		if pr, ok := st.Progress[id]; id != self && ok && (best == 0 || pr.Match > match) {
			best, match = id, pr.Match
		}
	}
	return best
}

// enter starts raft for the cluster the bootstrap decided on.
func (m *membership) enter(d bootstrap.Decision) {
	n := m.n
	if n.cfg.InitialSnapshot != "" && (d.Join || len(d.Members) != 1) {
		n.fail(fmt.Errorf("%w (cluster %x)", ErrInitialSnapshotJoin, d.ClusterID))
		return
	}
	var peers []uint64
	if !d.Join {
		peers = d.Members
	}
	n.mesh.SetClusterID(ids.ClusterID(d.ClusterID))
	if err := n.startRaft(d.ClusterID, peers, n.mesh); err != nil {
		n.log.Error("cannot start raft", "err", err)
		return
	}
	n.mesh.SetHandler(n.raft.Load())
	if d.Join {
		n.log.Info("joining existing cluster", "cluster", fmt.Sprintf("%x", d.ClusterID))
	} else {
		n.log.Info("formed cluster", "cluster", fmt.Sprintf("%x", d.ClusterID), "members", fmt.Sprintf("%x", d.Members))
	}
}

// removalConfirm is how long a member must see the leader's membership
// without itself before it concludes it was removed while cut off.
const removalConfirm = 3 * time.Second

// removedBehindOurBack reports whether this member, which believes it is a
// member, has been missing for removalConfirm from the membership that a
// leader of the current or a later term gossips: the cluster removed it while
// it was cut off, and raft will never tell it so (a removed member receives
// no more log entries).
func (m *membership) removedBehindOurBack(st raftadapter.Status, leaderTerm uint64, members []uint64) bool {
	self := m.n.id
	inOwn := slices.Contains(st.Voters, self) || slices.Contains(st.Learners, self)
	if !inOwn || st.IsLeader || leaderTerm == 0 || leaderTerm < st.Term || slices.Contains(members, self) {
		m.excludedSince = time.Time{}
		return false
	}
	if m.excludedSince.IsZero() {
		m.excludedSince = time.Now()
	}
	return time.Since(m.excludedSince) >= removalConfirm
}

// appState is what the node gossips in Meta.App: its bootstrap state and,
// once in a cluster, its view of the membership.
type appState struct {
	Boot    bootstrap.State `json:"b"`
	Term    uint64          `json:"t,omitempty"`
	Leader  bool            `json:"l,omitempty"`
	Members []uint64        `json:"m,omitempty"` // voters and learners, as this node applied them
}

func decodeAppState(b []byte) (appState, error) {
	var a appState
	if err := json.Unmarshal(b, &a); err != nil {
		return appState{}, fmt.Errorf("meshkv: decode gossiped state: %w", err)
	}
	if a.Boot.RaftID == 0 {
		return appState{}, errors.New("meshkv: gossiped state without raft id")
	}
	return a, nil
}

// publish gossips this node's metadata when it changed.
func (m *membership) publish(role string) {
	n := m.n
	app := appState{Boot: m.boot.State()}
	if st := m.status; st.Term != 0 {
		app.Term, app.Leader = st.Term, st.IsLeader
		app.Members = append(slices.Clone(st.Voters), st.Learners...)
	}
	appBytes, _ := json.Marshal(app) // plain numbers and slices cannot fail to encode
	meta := meshtransport.Meta{
		RaftID:      n.id,
		ClusterName: n.cfg.ClusterName,
		ClusterID:   n.clusterID.Load(),
		ClientURLs:  n.clientURLs,
		Role:        role,
		App:         appBytes,
	}
	if meta.Role == m.lastMeta.Role && meta.ClusterID == m.lastMeta.ClusterID && bytes.Equal(meta.App, m.lastMeta.App) {
		return
	}
	m.lastMeta = meta
	n.mesh.SetMeta(meta)
}

// lead keeps the membership healthy, one conf change per step, each applied
// before the next:
//   - members that announced they are leaving are removed;
//   - a voter the mesh has reported gone (our probes fail, directly and by
//     detour) for DeadMemberTimeout is removed, but only while the live
//     voters still form a quorum, so a leader cut off with a minority never
//     removes anyone, and never the last voter; a learner gone that long is
//     removed too;
//   - mesh peers that joined our cluster are added as learners;
//   - caught-up learners are promoted while there are fewer voters than
//     TargetVoters.
func (m *membership) lead(rn *raftadapter.Node, st raftadapter.Status, peers []meshtransport.Peer) {
	n := m.n
	cid := n.clusterID.Load()
	ctx, cancel := context.WithTimeout(n.ctx, confChangeTimeout)
	defer cancel()

	now := time.Now()
	live := map[uint64]bool{n.id: true}
	roles := map[uint64]string{}
	for _, p := range peers {
		if p.Meta.ClusterID != cid || p.Meta.RaftID == 0 {
			continue
		}
		roles[p.Meta.RaftID] = p.Meta.Role
		if p.Live {
			live[p.Meta.RaftID] = true
		}
	}
	members := append(slices.Clone(st.Voters), st.Learners...)
	for _, id := range members {
		if live[id] {
			delete(m.deadSince, id)
		} else if _, ok := m.deadSince[id]; !ok {
			m.deadSince[id] = now
		}
	}
	for id := range m.deadSince {
		if !slices.Contains(members, id) {
			delete(m.deadSince, id)
		}
	}
	change := func(what string, id uint64, f func(context.Context, uint64) error) {
		if err := f(ctx, id); err != nil {
			n.log.Warn(what+" failed", "id", fmt.Sprintf("%x", id), "err", err)
			return
		}
		n.log.Info(what, "id", fmt.Sprintf("%x", id))
	}

	// Members leaving gracefully (the leader itself hands over first).
	for _, id := range members {
		if id != n.id && roles[id] == roleLeaving && (len(st.Voters) > 1 || !slices.Contains(st.Voters, id)) {
			change("removed leaving member", id, rn.RemoveMember)
			return
		}
	}
	// Dead members.
	liveVoters := 0
	for _, id := range st.Voters {
		if live[id] {
			liveVoters++
		}
	}
	quorum := len(st.Voters)/2 + 1
	for _, id := range sorted(members) {
		since, dead := m.deadSince[id]
		if !dead || now.Sub(since) < n.cfg.DeadMemberTimeout {
			continue
		}
		if slices.Contains(st.Voters, id) && (liveVoters < quorum || len(st.Voters) == 1) {
			continue
		}
		change("removed dead member", id, rn.RemoveMember)
		return
	}
	// Newcomers.
	for _, p := range peers {
		if p.Meta.ClusterID != cid || p.Meta.RaftID == 0 || p.Meta.Role != roleJoining || slices.Contains(members, p.Meta.RaftID) {
			continue
		}
		change("added learner", p.Meta.RaftID, func(ctx context.Context, id uint64) error {
			return rn.AddLearner(ctx, id, nil)
		})
		return
	}
	// Promotions.
	if len(st.Voters) >= n.cfg.TargetVoters {
		return
	}
	for _, id := range sorted(st.Learners) {
		if !live[id] || roles[id] == roleLeaving || !caughtUp(st, id) {
			continue
		}
		change("promoted learner to voter", id, rn.Promote)
		return
	}
}

// caughtUp reports whether learner id is close enough to the leader's log
// to be promoted.
func caughtUp(st raftadapter.Status, id uint64) bool {
	pr, ok := st.Progress[id]
	return ok && pr.Match+catchUpMargin >= st.CommitIndex
}

// catchUpMargin is how far behind the commit index a learner may be and still
// count as caught up for promotion.
const catchUpMargin = 100

func (m *membership) metaByRaftID() map[uint64]peerMeta {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.known
}

func (m *membership) errors() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, c := range m.conflict {
		out = append(out, fmt.Sprintf("meshkv: another cluster %x named %q is on the mesh (not merged)", c, m.n.cfg.ClusterName))
	}
	return out
}
