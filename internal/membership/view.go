package membership

import (
	"slices"

	"github.com/meshkv/meshkv/internal/ids"
)

// Role is what a node says about itself in its own signed transport entry.
type Role uint8

// Roles a node announces. Only the node itself can announce its role: the
// transport drops entries not signed by the key the member id derives from.
const (
	RoleUnknown Role = iota
	// RoleSeeking: bootstrapping, in no cluster yet.
	RoleSeeking
	// RoleJoining: in a cluster's bootstrap decision, asking its leader to be
	// added (as a learner).
	RoleJoining
	// RoleLearner and RoleVoter: a member, as its own applied state says.
	RoleLearner
	RoleVoter
	// RoleLeaving: asks to be removed (a graceful shutdown).
	RoleLeaving
)

var roleNames = [...]string{"unknown", "seeking", "joining", "learner", "voter", "leaving"}

// String returns the role's lowercase name.
func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "unknown"
}

// View is everything the planner looks at in one step. The caller builds it
// fresh for each step; the planner keeps no reference to it.
type View struct {
	// Cluster is the cluster this node formed or joined (0: none yet; the
	// planner then does nothing).
	Cluster ids.ClusterID
	// Raft is this node's raft state.
	Raft Raft
	// Peers are the other nodes the transport knows of, with expired entries
	// included and flagged. Peers of another cluster are ignored.
	Peers []Peer
	// Notices are removal notices and membership-query replies received
	// since the previous step.
	Notices []Notice
	// Leaving is set when this node shuts down gracefully: it wants to be
	// removed and, if it leads, to hand leadership over first.
	Leaving bool
}

// Raft is a node's raft state: the applied configuration and, on the
// leader, its view of every member's replication.
type Raft struct {
	// Term is the current raft term.
	Term uint64
	// Leader reports whether this node is the leader.
	Leader bool
	// Lead is the leader this node knows of (0: none).
	Lead ids.MemberID
	// Commit is the leader's commit index (on the leader).
	Commit uint64
	// Voters and Learners are the applied configuration. A joint
	// configuration is never handed to the planner: the caller reports
	// ConfChangePending until raft has left it.
	Voters   []ids.MemberID
	Learners []ids.MemberID
	// Progress is the leader's view of each member's replication (nil on
	// other nodes).
	Progress map[ids.MemberID]Progress
	// ConfChangePending is set while a membership change may be in the log
	// unapplied (raft refuses another one then), and while a joint
	// configuration has not been left.
	ConfChangePending bool
	// Removed reports whether an id left the applied configuration (nil:
	// none did). Ids are never reused, so a removed id never comes back.
	Removed func(ids.MemberID) bool
}

// WasRemoved reports whether id left the applied configuration.
func (r *Raft) WasRemoved(id ids.MemberID) bool { return r.Removed != nil && r.Removed(id) }

// Progress is the leader's view of one member's replication, as raft's
// tracker reports it.
type Progress struct {
	// Match is the highest log index the member acknowledged.
	Match uint64
	// RecentActive reports whether the leader heard from the member since
	// the last CheckQuorum round (about one election timeout).
	RecentActive bool
}

// IsMember reports whether id is a voter or learner of the configuration.
func (r *Raft) IsMember(id ids.MemberID) bool {
	return slices.Contains(r.Voters, id) || slices.Contains(r.Learners, id)
}

// Peer is another node as this node's transport sees it.
type Peer struct {
	ID ids.MemberID
	// Cluster is the cluster id in the peer's signed entry.
	Cluster ids.ClusterID
	// Live reports whether our own probes or links reach the peer now.
	Live bool
	// Expired reports whether the peer's signed entry was not refreshed for
	// the transport's entry lifetime: the process is gone, or cut off from
	// all of our side for that long. An expired peer's statements (role,
	// unreachable set) no longer count.
	Expired bool
	// Role is what the peer's own signed entry says it is.
	Role Role
	// Unreachable are the member ids the peer itself, in its own signed
	// entry, reports it cannot reach.
	Unreachable []ids.MemberID
}

// NoticeKind tells what a Notice says.
type NoticeKind uint8

// Notice kinds. All of them come from the sender's applied raft state and
// reach us over the transport's authenticated paths, never from gossip.
const (
	// NoticeRemoved: the sender applied this node's removal (an answer to
	// raft traffic from a removed member, or to a membership query).
	NoticeRemoved NoticeKind = iota + 1
	// NoticeMember: the sender's applied configuration includes this node.
	NoticeMember
	// NoticeUnknown: the sender's applied state does not know this node
	// (it may not have applied the node's addition yet).
	NoticeUnknown
)

// Notice is one attributable statement another member made about this
// node's membership.
type Notice struct {
	From ids.MemberID
	// Cluster is the sender's cluster. A removal notice from a member of our
	// configuration that now belongs to another cluster means that cluster
	// was recovered from ours (see PlanRecovery) and superseded it.
	Cluster ids.ClusterID
	Kind    NoticeKind
	// Term is the sender's raft term.
	Term uint64
}
