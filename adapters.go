package meshkv

import (
	"context"
	"errors"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshkv/meshkv/internal/forward"
	"github.com/meshkv/meshkv/internal/ids"
	"github.com/meshkv/meshkv/kvapi"
	"github.com/meshkv/meshkv/meshtransport"
	"github.com/meshkv/meshkv/raftadapter"
)

// errNotMember is returned while the node has not yet formed or joined a
// cluster; clients see etcd's "no leader".
var errNotMember = fmt.Errorf("%w: not a member of a cluster yet", kvapi.ErrNoLeader)

// replicator adapts the node's raft member to kvapi, translating its errors.
type replicator struct{ n *Node }

var _ kvapi.Replicator = replicator{}

func (r replicator) Propose(ctx context.Context, data []byte) (any, error) {
	rn := r.n.raft.Load()
	if rn == nil {
		return nil, errNotMember
	}
	v, err := rn.Propose(ctx, data)
	return v, raftError(err)
}

func (r replicator) ReadIndex(ctx context.Context) error {
	rn := r.n.raft.Load()
	if rn == nil {
		return errNotMember
	}
	return raftError(rn.ReadIndex(ctx))
}

// raftError maps raftadapter's errors to the ones kvapi turns into etcd's.
func raftError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raftadapter.ErrNoLeader):
		return fmt.Errorf("%w: %w", kvapi.ErrNoLeader, err)
	case errors.Is(err, raftadapter.ErrLeaderChanged):
		return fmt.Errorf("%w: %w", kvapi.ErrLeaderChanged, err)
	case errors.Is(err, raftadapter.ErrStopped), errors.Is(err, raftadapter.ErrRemoved):
		return fmt.Errorf("%w: %w", kvapi.ErrStopped, err)
	case errors.Is(err, raftadapter.ErrTimeout), errors.Is(err, raftadapter.ErrOutcomeUnknown):
		return fmt.Errorf("%w: %w", kvapi.ErrTimeout, err)
	}
	return err
}

// clusterView tells kvapi about this node's cluster.
type clusterView struct{ n *Node }

var _ kvapi.Cluster = clusterView{}

func (c clusterView) ClusterID() uint64 { return c.n.clusterID.Load() }
func (c clusterView) MemberID() uint64  { return c.n.id }

func (c clusterView) RaftStatus() kvapi.RaftStatus {
	rn := c.n.raft.Load()
	if rn == nil {
		return kvapi.RaftStatus{}
	}
	st := rn.Status()
	return kvapi.RaftStatus{
		Leader:       st.Leader,
		Term:         st.Term,
		CommitIndex:  st.CommitIndex,
		AppliedIndex: st.AppliedIndex,
		IsLearner:    slices.Contains(st.Learners, c.n.id),
	}
}

// LeaderTerm reads the leader and term the raft member publishes: atomic
// loads only, as kvapi reads them for every response header.
func (c clusterView) LeaderTerm() (leader, term uint64) {
	rn := c.n.raft.Load()
	if rn == nil {
		return 0, 0
	}
	return rn.LeaderTerm()
}

// Members lists the raft members (voters, then learners, each by id) with the
// names and client URLs they gossip, and their mesh address as the peer URL
// (see peerURL). A member not currently seen on the mesh is listed with its
// id only, as etcd lists an unstarted member.
func (c clusterView) Members() []*pb.Member {
	n := c.n
	self := &pb.Member{ID: n.id, Name: n.cfg.Name, ClientURLs: n.clientURLs}
	rn := n.raft.Load()
	if rn == nil || n.members == nil {
		return []*pb.Member{self}
	}
	st := rn.Status()
	known := n.members.Peers()
	addrs := n.mesh.PeerAddrs()
	var out []*pb.Member
	add := func(id uint64, learner bool) {
		m := &pb.Member{ID: id, IsLearner: learner}
		if id == n.id {
			m.Name, m.ClientURLs = self.Name, self.ClientURLs
		} else if meta, ok := known[ids.MemberID(id)]; ok {
			m.Name, m.ClientURLs = meta.Name, meta.ClientURLs
		}
		if a, ok := addrs[meshtransport.MemberID(id)]; ok {
			m.PeerURLs = []string{peerURL(a)}
		}
		out = append(out, m)
	}
	for _, id := range sorted(st.Voters) {
		add(id, false)
	}
	for _, id := range sorted(st.Learners) {
		add(id, true)
	}
	return out
}

// Errors reports conditions an operator must see in Status.
func (c clusterView) Errors() []string {
	if c.n.members == nil {
		return nil
	}
	var out []string
	for _, e := range c.n.members.Errors() {
		out = append(out, "meshkv: "+e)
	}
	return out
}

// peerURL is a member's peer URL: its mesh address (where its TLS 1.3 peer
// links are accepted) with the https scheme, which --listen-peer-urls and
// --initial-cluster accept back.
func peerURL(meshAddr string) string { return "https://" + meshAddr }

func sorted(ids []uint64) []uint64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

var _ kvapi.MembershipChanger = clusterView{}

// RemoveMember removes member id, as etcdctl member remove. The leader makes
// the change; a follower forwards the request to the leader's client URL.
func (c clusterView) RemoveMember(ctx context.Context, id uint64) error {
	rn := c.n.raft.Load()
	if rn == nil {
		return errNotMember
	}
	st := rn.Status()
	switch {
	case !slices.Contains(st.Voters, id) && !slices.Contains(st.Learners, id):
		return fmt.Errorf("%w: %x", kvapi.ErrMemberNotFound, id)
	case len(st.Voters) == 1 && st.Voters[0] == id:
		return fmt.Errorf("%w: %x is the only voter", kvapi.ErrTooFewVoters, id)
	case !st.IsLeader:
		return c.forward(st.Leader, func(cli *clientv3.Client) error {
			_, err := cli.MemberRemove(ctx, id)
			return err
		})
	}
	return membershipError(rn.RemoveMember(ctx, id))
}

// PromoteMember promotes learner id to voter, as etcdctl member promote, if
// it has caught up with the leader's log.
func (c clusterView) PromoteMember(ctx context.Context, id uint64) error {
	rn := c.n.raft.Load()
	if rn == nil {
		return errNotMember
	}
	st := rn.Status()
	switch {
	case slices.Contains(st.Voters, id):
		return fmt.Errorf("%w: %x is a voter", kvapi.ErrMemberNotLearner, id)
	case !slices.Contains(st.Learners, id):
		return fmt.Errorf("%w: %x", kvapi.ErrMemberNotFound, id)
	case !st.IsLeader:
		return c.forward(st.Leader, func(cli *clientv3.Client) error {
			_, err := cli.MemberPromote(ctx, id)
			return err
		})
	case !learnerReady(st, id):
		return fmt.Errorf("%w: %x", kvapi.ErrLearnerNotReady, id)
	}
	return membershipError(rn.Promote(ctx, id))
}

// learnerReady is etcd's rule for an operator's promotion: the learner is
// active and has acknowledged at least 90% of what the leader has. (The
// automatic promotions of internal/membership demand more: the leader's
// commit index, for a while.)
func learnerReady(st raftadapter.Status, id uint64) bool {
	pr, ok := st.Progress[id]
	lead := st.Progress[st.ID]
	return ok && pr.RecentActive && pr.Match > 0 && pr.Match*10 >= lead.Match*9
}

// forward runs call against the leader through its advertised client URL,
// on the node's cached client for that leader. The leader's errors come back
// as the gRPC errors it sent.
func (c clusterView) forward(leader uint64, call func(*clientv3.Client) error) error {
	if leader == 0 || c.n.members == nil {
		return fmt.Errorf("%w: leader unknown", kvapi.ErrNoLeader)
	}
	meta, ok := c.n.members.Peers()[ids.MemberID(leader)]
	if !ok || len(meta.ClientURLs) == 0 {
		// The leader serves no TCP clients: the caller must ask it in
		// process.
		return fmt.Errorf("%w: leader %x serves no client URL to forward to", kvapi.ErrNotLeader, leader)
	}
	cli, err := c.n.leaderClients.Client(leader, meta.ClientURLs)
	if err != nil {
		return fmt.Errorf("%w: %w", kvapi.ErrNotLeader, err)
	}
	return forward.StatusError(call(cli))
}

// membershipError maps raftadapter's membership errors to kvapi's.
func membershipError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raftadapter.ErrUnknownMember):
		return fmt.Errorf("%w: %w", kvapi.ErrMemberNotFound, err)
	case errors.Is(err, raftadapter.ErrMemberExists):
		return fmt.Errorf("%w: %w", kvapi.ErrMemberExists, err)
	case errors.Is(err, raftadapter.ErrNotLeader):
		return fmt.Errorf("%w: %w", kvapi.ErrNotLeader, err)
	case errors.Is(err, raftadapter.ErrInvalidConfChange):
		return fmt.Errorf("%w: %w", kvapi.ErrTooFewVoters, err)
	}
	return raftError(err)
}

var _ kvapi.LeaderMover = clusterView{}

// MoveLeader hands leadership to voter to. Like etcd, only the leader accepts
// it (etcdctl move-leader finds the leader itself).
func (c clusterView) MoveLeader(ctx context.Context, to uint64) error {
	rn := c.n.raft.Load()
	if rn == nil {
		return errNotMember
	}
	st := rn.Status()
	switch {
	case !st.IsLeader:
		return fmt.Errorf("%w: move-leader goes to the leader", kvapi.ErrNotLeader)
	case !slices.Contains(st.Voters, to):
		return fmt.Errorf("%w: %x", kvapi.ErrBadLeaderTransferee, to)
	}
	return raftError(rn.TransferLeadership(ctx, to))
}
