package clusterview

import (
	"context"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshkv/meshkv/internal/forward"
	"github.com/meshkv/meshkv/internal/ids"
	"github.com/meshkv/meshkv/internal/membership"
	"github.com/meshkv/meshkv/kvapi"
	"github.com/meshkv/meshkv/meshtransport"
	"github.com/meshkv/meshkv/raftadapter"
)

// Raft is what the view needs of the node's raft member.
type Raft interface {
	Propose(ctx context.Context, data []byte) (any, error)
	ReadIndex(ctx context.Context) error
	Status() raftadapter.Status
	LeaderTerm() (leader, term uint64)
	RemoveMember(ctx context.Context, id uint64) error
	Promote(ctx context.Context, id uint64) error
	TransferLeadership(ctx context.Context, to uint64) error
}

var _ Raft = (*raftadapter.Node)(nil)

// Membership is what the view needs of the membership controller: what each
// peer gossips about itself, and the conditions an operator must see.
type Membership interface {
	Peers() map[ids.MemberID]membership.PeerInfo
	Errors() []string
}

var _ Membership = (*membership.Controller)(nil)

// Mesh gives the mesh address of each member seen on the mesh.
type Mesh interface {
	PeerAddrs() map[meshtransport.MemberID]string
}

var _ Mesh = (*meshtransport.Transport)(nil)

// Forwarder returns a client of the member id, which serves urls.
type Forwarder interface {
	Client(id uint64, urls []string) (*clientv3.Client, error)
}

// Config is what a View reads. Every function field must return a nil
// interface (not a typed nil) while there is nothing to return.
type Config struct {
	// ID is this member's raft id; Name and ClientURLs are what it
	// advertises.
	ID         uint64
	Name       string
	ClientURLs []string
	// ClusterID returns the cluster's id (0 before the node is in one).
	ClusterID func() uint64
	// Raft returns the raft member (nil before the node is in a cluster).
	Raft func() Raft
	// Membership returns the membership controller and Mesh the mesh
	// transport (both nil for a standalone node).
	Membership func() Membership
	Mesh       func() Mesh
	// Forwarder forwards operator requests to the leader.
	Forwarder Forwarder
}

// View implements kvapi's Cluster, MembershipChanger and LeaderMover.
type View struct{ cfg Config }

var (
	_ kvapi.Cluster           = (*View)(nil)
	_ kvapi.MembershipChanger = (*View)(nil)
	_ kvapi.LeaderMover       = (*View)(nil)
)

// New returns a view reading cfg.
func New(cfg Config) *View { return &View{cfg: cfg} }

// ClusterID returns the cluster's id (0 before the node is in one).
func (v *View) ClusterID() uint64 { return v.cfg.ClusterID() }

// MemberID returns this member's raft id.
func (v *View) MemberID() uint64 { return v.cfg.ID }

// RaftStatus returns the raft member's position (zero before it exists).
func (v *View) RaftStatus() kvapi.RaftStatus {
	rn := v.cfg.Raft()
	if rn == nil {
		return kvapi.RaftStatus{}
	}
	st := rn.Status()
	return kvapi.RaftStatus{
		Leader:       st.Leader,
		Term:         st.Term,
		CommitIndex:  st.CommitIndex,
		AppliedIndex: st.AppliedIndex,
		IsLearner:    slices.Contains(st.Learners, v.cfg.ID),
	}
}

// LeaderTerm reads the leader and term the raft member publishes: atomic
// loads only, as kvapi reads them for every response header.
func (v *View) LeaderTerm() (leader, term uint64) {
	rn := v.cfg.Raft()
	if rn == nil {
		return 0, 0
	}
	return rn.LeaderTerm()
}

// Members lists the raft members (voters, then learners, each by id) with the
// names and client URLs they gossip, and their mesh address as the peer URL
// (see PeerURL). A member not currently seen on the mesh is listed with its
// id only, as etcd lists an unstarted member.
func (v *View) Members() []*pb.Member {
	self := &pb.Member{ID: v.cfg.ID, Name: v.cfg.Name, ClientURLs: v.cfg.ClientURLs}
	rn, members := v.cfg.Raft(), v.cfg.Membership()
	if rn == nil || members == nil {
		return []*pb.Member{self}
	}
	st := rn.Status()
	known := members.Peers()
	addrs := v.cfg.Mesh().PeerAddrs()
	var out []*pb.Member
	add := func(id uint64, learner bool) {
		m := &pb.Member{ID: id, IsLearner: learner}
		if id == v.cfg.ID {
			m.Name, m.ClientURLs = self.Name, self.ClientURLs
		} else if meta, ok := known[ids.MemberID(id)]; ok {
			m.Name, m.ClientURLs = meta.Name, meta.ClientURLs
		}
		if a, ok := addrs[meshtransport.MemberID(id)]; ok {
			m.PeerURLs = []string{PeerURL(a)}
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
func (v *View) Errors() []string {
	members := v.cfg.Membership()
	if members == nil {
		return nil
	}
	var out []string
	for _, e := range members.Errors() {
		out = append(out, "meshkv: "+e)
	}
	return out
}

// PeerURL is a member's peer URL: its mesh address (where its TLS 1.3 peer
// links are accepted) with the https scheme, which --listen-peer-urls and
// --initial-cluster accept back.
func PeerURL(meshAddr string) string { return "https://" + meshAddr }

func sorted(ids []uint64) []uint64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// forward runs call against the leader through its advertised client URL,
// on the node's cached client for that leader. The leader's errors come back
// as the gRPC errors it sent.
func (v *View) forward(leader uint64, call func(*clientv3.Client) error) error {
	members := v.cfg.Membership()
	if leader == 0 || members == nil {
		return fmt.Errorf("%w: leader unknown", kvapi.ErrNoLeader)
	}
	meta, ok := members.Peers()[ids.MemberID(leader)]
	if !ok || len(meta.ClientURLs) == 0 {
		// The leader serves no TCP clients: the caller must ask it in
		// process.
		return fmt.Errorf("%w: leader %x serves no client URL to forward to", kvapi.ErrNotLeader, leader)
	}
	cli, err := v.cfg.Forwarder.Client(leader, meta.ClientURLs)
	if err != nil {
		return fmt.Errorf("%w: %w", kvapi.ErrNotLeader, err)
	}
	return forward.StatusError(call(cli))
}
