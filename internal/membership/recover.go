package membership

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
)

// Errors PlanRecovery returns.
var (
	// ErrNotMember: the node is not a member of a cluster (or was removed);
	// it has nothing to recover from.
	ErrNotMember = errors.New("membership: not a member of a cluster")
	// ErrLeaderKnown: this node or a member it reached follows a leader, so
	// the cluster has a quorum somewhere.
	ErrLeaderKnown = errors.New("membership: the cluster has a leader")
	// ErrTooSoon: the node has not been without a leader long enough to
	// tell a lost quorum from an election.
	ErrTooSoon = errors.New("membership: leader lost too recently")
	// ErrQuorumReachable: a majority of the voters answered the survey; the
	// cluster can elect a leader once they reach each other, so recovering
	// would split it.
	ErrQuorumReachable = errors.New("membership: a quorum of voters is reachable")
	// ErrNotHighest: another survivor applied more of the log; recover that
	// one instead (or force it, accepting the loss of what only it applied).
	ErrNotHighest = errors.New("membership: another survivor applied more")
)

// Survivor is one member's answer to a recovery survey (a membership query
// sent to every member of the configuration), taken from its applied state.
type Survivor struct {
	ID      ids.MemberID
	Cluster ids.ClusterID
	// Applied is its applied index.
	Applied uint64
	// Lead is the leader it follows (0: none).
	Lead ids.MemberID
	// Removed reports whether it applied its own removal.
	Removed bool
}

// RecoveryInput is what the node asked to recover knows when the operator
// calls it.
type RecoveryInput struct {
	// Self is this node's own state.
	Self Survivor
	// Voters and Learners are this node's applied configuration.
	Voters   []ids.MemberID
	Learners []ids.MemberID
	// Others are the answers of the other members this node reached.
	Others []Survivor
	// LeaderlessFor is how long this node has known no leader.
	LeaderlessFor time.Duration
	// Force skips the check that this node applied the most. It never skips
	// the checks that the quorum is really lost.
	Force bool
	// Nonce makes the new cluster id unique (the caller draws it at random).
	Nonce uint64
}

// RecoveryPlan is the new configuration a recovered node restarts raft
// with, keeping its state machine.
type RecoveryPlan struct {
	// Cluster is the new cluster's id; Supersedes the old one's. The new id
	// keeps the two clusters apart on the mesh: members of the old one never
	// exchange raft messages with the new one, so logs that diverged cannot
	// mix.
	Cluster    ids.ClusterID
	Supersedes ids.ClusterID
	// Voter is the recovered node, the only voter of the new configuration.
	Voter ids.MemberID
	// Applied is the index its state machine has applied: the new raft log
	// starts from a snapshot at that index. Entries it had not applied are
	// dropped (they were not known to be committed).
	Applied uint64
	// Removed are the other members of the old configuration. The new
	// cluster records them as removed, so each of them, on contact, gets a
	// removal notice from a member of its own configuration and stops (see
	// Planner: it accepts that only after QueryAfter without a leader); its
	// supervisor restarts it and it joins the new cluster as a new member.
	Removed []ids.MemberID
}

// PlanRecovery decides whether the node described by in may restart its
// raft member as the only voter of a new configuration (as etcd's
// --force-new-cluster does with a data directory), and returns the plan.
// It refuses unless the quorum is really lost as far as the node can tell:
// no leader known anywhere it reached, for at least cfg's QueryAfter, and
// fewer than a majority of the voters answering. Unless forced, it also
// refuses unless the node applied the most of all survivors that answered
// (ties broken by the higher member id), so that the least data is lost
// and two operators recovering two survivors at once cannot both succeed.
func PlanRecovery(cfg Config, in RecoveryInput) (RecoveryPlan, error) {
	cfg = cfg.withDefaults()
	self := in.Self
	member := slices.Contains(in.Voters, self.ID) || slices.Contains(in.Learners, self.ID)
	if self.ID == 0 || self.Cluster == 0 || self.Removed || !member {
		return RecoveryPlan{}, fmt.Errorf("%w: member %s of cluster %s", ErrNotMember, self.ID, self.Cluster)
	}
	if self.Lead != 0 {
		return RecoveryPlan{}, fmt.Errorf("%w: this member follows %s", ErrLeaderKnown, self.Lead)
	}
	if in.LeaderlessFor < cfg.QueryAfter {
		return RecoveryPlan{}, fmt.Errorf("%w: no leader for %v, need %v", ErrTooSoon, in.LeaderlessFor, cfg.QueryAfter)
	}
	answered := map[ids.MemberID]Survivor{}
	for _, o := range in.Others {
		if o.ID == self.ID || o.Cluster != self.Cluster || o.Removed {
			continue
		}
		if !slices.Contains(in.Voters, o.ID) && !slices.Contains(in.Learners, o.ID) {
			continue
		}
		if o.Lead != 0 {
			return RecoveryPlan{}, fmt.Errorf("%w: member %s follows %s", ErrLeaderKnown, o.ID, o.Lead)
		}
		answered[o.ID] = o
	}
	reached := 0
	for _, id := range in.Voters {
		if _, ok := answered[id]; ok || id == self.ID {
			reached++
		}
	}
	if q := quorum(len(in.Voters)); reached >= q {
		return RecoveryPlan{}, fmt.Errorf("%w: %d of %d voters answered (%d form a quorum); restore their connectivity instead",
			ErrQuorumReachable, reached, len(in.Voters), q)
	}
	if !in.Force {
		for _, o := range sortedSurvivors(answered) {
			if cmp.Or(cmp.Compare(o.Applied, self.Applied), cmp.Compare(o.ID, self.ID)) > 0 {
				return RecoveryPlan{}, fmt.Errorf("%w: member %s applied index %d, this member %d; recover %s",
					ErrNotHighest, o.ID, o.Applied, self.Applied, o.ID)
			}
		}
	}
	var removed []ids.MemberID
	for _, list := range [][]ids.MemberID{in.Voters, in.Learners} {
		for _, id := range list {
			if id != self.ID && !slices.Contains(removed, id) {
				removed = append(removed, id)
			}
		}
	}
	slices.Sort(removed)
	return RecoveryPlan{
		Cluster:    recoveredClusterID(self.Cluster, self.ID, self.Applied, in.Nonce),
		Supersedes: self.Cluster,
		Voter:      self.ID,
		Applied:    self.Applied,
		Removed:    removed,
	}, nil
}

func sortedSurvivors(m map[ids.MemberID]Survivor) []Survivor {
	out := make([]Survivor, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Survivor) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// recoveredClusterID derives the new cluster's id: nonzero, never the old
// one, and distinct across recoveries with overwhelming probability.
func recoveredClusterID(old ids.ClusterID, self ids.MemberID, applied, nonce uint64) ids.ClusterID {
	var buf [32]byte
	binary.BigEndian.PutUint64(buf[0:], uint64(old))
	binary.BigEndian.PutUint64(buf[8:], uint64(self))
	binary.BigEndian.PutUint64(buf[16:], applied)
	binary.BigEndian.PutUint64(buf[24:], nonce)
	h := sha256.New()
	h.Write([]byte("meshkv/recovered-cluster/v1"))
	h.Write(buf[:])
	sum := h.Sum(nil)
	for i := 0; i < len(sum); i += 8 {
		if id := ids.ClusterID(binary.BigEndian.Uint64(sum[i:])); id != 0 && id != old {
			return id
		}
	}
	return old ^ 1 // unreachable in practice: four 64-bit words all 0 or old

}
