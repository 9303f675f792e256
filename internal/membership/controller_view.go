package membership

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/meshkv/meshkv/internal/bootstrap"
	"github.com/meshkv/meshkv/internal/ids"
	"github.com/meshkv/meshkv/meshtransport"
	"github.com/meshkv/meshkv/raftadapter"
)

var (
	_ Source   = (*Controller)(nil)
	_ Actuator = (*Controller)(nil)
)

// AppState is what a node gossips in its entry's app state: its bootstrap
// state, JSON encoded.
type AppState struct {
	Boot bootstrap.State `json:"b"`
}

// DecodeAppState decodes a peer's app state.
func DecodeAppState(b []byte) (AppState, error) {
	var a AppState
	if err := json.Unmarshal(b, &a); err != nil {
		return AppState{}, fmt.Errorf("membership: decode gossiped state: %w", err)
	}
	if a.Boot.RaftID == 0 {
		return AppState{}, errors.New("membership: gossiped state without member id")
	}
	return a, nil
}

// publish sets this node's entry when it changed.
func (c *Controller) publish(role string) {
	app, _ := json.Marshal(AppState{Boot: c.boot.State()}) // plain numbers: cannot fail
	meta := meshtransport.Meta{
		ClusterName: c.cfg.ClusterName,
		ClusterID:   c.cluster.Load(),
		ClientURLs:  c.cfg.ClientURLs,
		Role:        role,
		App:         app,
	}
	if meta.Role == c.lastMeta.Role && meta.ClusterID == c.lastMeta.ClusterID && bytes.Equal(meta.App, c.lastMeta.App) {
		return
	}
	c.lastMeta = meta
	c.mesh.SetMeta(meta)
}

// expired reports whether p's entry has expired (or never arrived).
func expired(p *meshtransport.Peer, now time.Time) bool {
	return p.LastRefresh.IsZero() || now.After(p.Expires)
}

// peersOfOurs lists the transport's peers that gossip our cluster name,
// without ourselves, and records their names and client URLs.
func (c *Controller) peersOfOurs() []meshtransport.Peer {
	var out []meshtransport.Peer
	known := map[ids.MemberID]PeerInfo{}
	for _, p := range c.mesh.Peers() {
		if p.Self || p.ID == c.cfg.Self || p.Meta.ClusterName != c.cfg.ClusterName {
			continue
		}
		out = append(out, p)
		known[p.ID] = PeerInfo{Name: p.NickName, ClientURLs: p.Meta.ClientURLs}
	}
	c.mu.Lock()
	c.known = known
	c.mu.Unlock()
	return out
}

// bootView is the bootstrap's view of the mesh.
func (c *Controller) bootView() bootstrap.View {
	v := c.bootViewOf(c.peersOfOurs(), time.Now())
	if len(c.cfg.Peers) > 0 {
		v.Heard = map[string]ids.MemberID{}
		for _, t := range c.mesh.PeerTargets() {
			if t.ID != 0 {
				v.Heard[t.Addr] = t.ID
			}
		}
	}
	return v
}

// Changed implements Source.
func (c *Controller) Changed() <-chan struct{} { return c.mesh.Changes() }

// View implements Source: the planner's view of raft and the mesh. It also
// does the round's chores: it answers membership messages, publishes this
// node's role, asks to join while not a member, and notes conflicts.
func (c *Controller) View() View {
	now := time.Now()
	c.takeRecovery()
	r := c.Raft()
	st := r.Status()
	self := uint64(c.cfg.Self)
	c.noteLeader(st.Leader, now)
	c.drainMessages(now)

	member := slices.Contains(st.Voters, self) || slices.Contains(st.Learners, self) || slices.Contains(st.VotersOutgoing, self)
	switch {
	case c.leaving.Load():
		c.publish(roleLeaving)
	case slices.Contains(st.Voters, self):
		c.publish(roleVoter)
	case member:
		c.publish(roleLearner)
	default:
		c.publish(roleJoining)
	}

	peers := c.peersOfOurs()
	d, _ := c.boot.Step(now, c.bootViewOf(peers, now)) // done: only reports conflicts
	c.setConflicts(d.Conflict)
	if !member && now.Sub(c.lastJoin) >= joinEvery {
		c.lastJoin = now
		c.askToJoin(peers, now)
	}

	v := View{
		Cluster: c.ClusterID(),
		Leaving: c.leaving.Load(),
		Raft: Raft{
			Term:              st.Term,
			Leader:            st.IsLeader,
			Lead:              ids.MemberID(st.Leader),
			Commit:            st.CommitIndex,
			Voters:            toIDs(st.Voters),
			Learners:          toIDs(st.Learners),
			ConfChangePending: st.ConfChangePending,
			Removed:           func(id ids.MemberID) bool { return r.WasRemoved(uint64(id)) },
		},
		Notices: c.replies,
	}
	c.replies = nil
	if st.Progress != nil {
		v.Raft.Progress = make(map[ids.MemberID]Progress, len(st.Progress))
		for id, pr := range st.Progress {
			v.Raft.Progress[ids.MemberID(id)] = Progress{Match: pr.Match, RecentActive: pr.RecentActive}
		}
	}
	for id, at := range c.joinReqs {
		if now.Sub(at) > joinRequestOK {
			delete(c.joinReqs, id)
		}
	}
	for i := range peers {
		p := &peers[i]
		role := parseRole(p.Meta.Role)
		if _, asked := c.joinReqs[p.ID]; asked && (role == RoleSeeking || role == RoleUnknown) {
			role = RoleJoining // it asked us directly; its entry lags
		}
		v.Peers = append(v.Peers, Peer{
			ID:          p.ID,
			Cluster:     ids.ClusterID(p.Meta.ClusterID),
			Live:        p.Live,
			Expired:     expired(p, now),
			Role:        role,
			Unreachable: p.Unreachable,
		})
	}
	return v
}

// bootViewOf is the bootstrap's view of peers (an entry speaks only for
// its own key's id).
func (c *Controller) bootViewOf(peers []meshtransport.Peer, now time.Time) bootstrap.View {
	var v bootstrap.View
	for i := range peers {
		p := &peers[i]
		if app, err := DecodeAppState(p.Meta.App); err == nil && app.Boot.RaftID == p.ID {
			v.Peers = append(v.Peers, bootstrap.Peer{State: app.Boot, Expired: expired(p, now)})
		}
	}
	return v
}

func toIDs(list []uint64) []ids.MemberID {
	out := make([]ids.MemberID, len(list))
	for i, id := range list {
		out[i] = ids.MemberID(id)
	}
	return out
}

// askToJoin sends a join request to every live member of our cluster.
func (c *Controller) askToJoin(peers []meshtransport.Peer, now time.Time) {
	cluster := c.cluster.Load()
	for i := range peers {
		p := &peers[i]
		if p.Live && !expired(p, now) && p.Meta.ClusterID == cluster && parseRole(p.Meta.Role) == RoleVoter {
			_ = c.mesh.SendMember(p.ID, meshtransport.MemberMessage{Kind: meshtransport.JoinRequest}) // repeated every joinEvery
		}
	}
}

// drainMessages handles the membership messages received: queries are
// answered from our applied state at once; replies and removal notices
// become Notices for the planner; join requests are remembered.
func (c *Controller) drainMessages(now time.Time) {
	for {
		select {
		case m := <-c.mesh.MemberMessages():
			c.handleMessage(m, now)
		default:
			return
		}
	}
}

func (c *Controller) handleMessage(m meshtransport.MemberMessage, now time.Time) {
	switch m.Kind {
	case meshtransport.MemberQuery:
		reply := meshtransport.MemberMessage{Kind: meshtransport.MemberReply, Nonce: m.Nonce, Status: meshtransport.StatusUnknown}
		if r := c.Raft(); r != nil {
			st := r.Status()
			reply.Term, reply.Index, reply.Leader = st.Term, st.AppliedIndex, meshtransport.MemberID(st.Leader)
			switch id := uint64(m.From); {
			case r.WasRemoved(id):
				reply.Status = meshtransport.StatusRemoved
			case slices.Contains(st.Voters, id) || slices.Contains(st.Learners, id) || slices.Contains(st.VotersOutgoing, id):
				reply.Status = meshtransport.StatusMember
			}
		}
		if err := c.mesh.SendMember(m.From, reply); err != nil {
			c.log.Debug("cannot answer a membership query", "to", m.From.String(), "err", err)
		}
	case meshtransport.MemberReply:
		c.recordSurvey(m)
		kind := NoticeUnknown
		switch m.Status {
		case meshtransport.StatusRemoved:
			kind = NoticeRemoved
		case meshtransport.StatusMember:
			kind = NoticeMember
		}
		c.replies = append(c.replies, Notice{From: m.From, Cluster: m.ClusterID, Kind: kind, Term: m.Term})
	case meshtransport.RemovalNotice:
		c.replies = append(c.replies, Notice{From: m.From, Cluster: m.ClusterID, Kind: NoticeRemoved, Term: m.Term})
	case meshtransport.JoinRequest:
		c.joinReqs[m.From] = now
	}
	if len(c.replies) > 256 {
		c.replies = c.replies[len(c.replies)-256:] // bounded; only the newest matter
	}
}

// ChangeMembership implements Actuator.
func (c *Controller) ChangeMembership(ctx context.Context, ch Change) error {
	r := c.Raft()
	changes := make([]raftadapter.ConfChange, len(ch.Ops))
	for i, op := range ch.Ops {
		var k raftadapter.ConfChangeKind
		switch op.Type {
		case OpAddLearner:
			k = raftadapter.AddLearnerChange
		case OpPromote:
			k = raftadapter.PromoteChange
		case OpRemove:
			k = raftadapter.RemoveChange
		case OpDemote:
			k = raftadapter.DemoteChange
		default:
			return fmt.Errorf("%w: operation %v", ErrInvalidConfig, op.Type)
		}
		changes[i] = raftadapter.ConfChange{Kind: k, ID: uint64(op.ID)}
	}
	return r.ChangeMembership(ctx, changes, nil)
}

// TransferLeadership implements Actuator.
func (c *Controller) TransferLeadership(ctx context.Context, to ids.MemberID) error {
	return c.Raft().TransferLeadership(ctx, uint64(to))
}

// QueryMembership implements Actuator: it asks the members of our
// configuration, and while we are not in it, the members of the cluster we
// joined, whether we are a member.
func (c *Controller) QueryMembership() {
	r := c.Raft()
	if r == nil {
		return
	}
	st := r.Status()
	c.queryNonce++
	targets := map[ids.MemberID]bool{}
	for _, list := range [][]uint64{st.Voters, st.Learners} {
		for _, id := range list {
			targets[ids.MemberID(id)] = true
		}
	}
	now := time.Now()
	for _, p := range c.peersOfOurs() {
		role := parseRole(p.Meta.Role)
		if !expired(&p, now) && p.Meta.ClusterID == c.cluster.Load() && (role == RoleVoter || role == RoleLearner) {
			targets[p.ID] = true
		}
	}
	delete(targets, c.cfg.Self)
	for id := range targets {
		_ = c.mesh.SendMember(id, meshtransport.MemberMessage{Kind: meshtransport.MemberQuery, Nonce: c.queryNonce})
	}
}
