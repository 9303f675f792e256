package meshkv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
	"github.com/meshkv/meshkv/internal/membership"
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

// testHooks are settings only this package's tests use: an in-memory
// network instead of sockets, and shorter protocol timers.
type testHooks struct {
	fabric         meshtransport.Fabric
	entryTTL       time.Duration // gossip entries (0: the transport's default)
	refresh        time.Duration
	promiseRelease time.Duration // bootstrap promises (0: promiseRelease)
	// stateMachine wraps the state machine raft applies to (fault
	// injection).
	stateMachine func(raftadapter.StateMachine) raftadapter.StateMachine
	// beforeRaft runs when the bootstrap decided, before raft starts
	// (members: the founding voters, nil to join); an error stops the
	// node there (to crash a founder between its proposal and forming).
	beforeRaft func(n *Node, members []ids.MemberID) error
}

// startMesh starts the mesh transport and the membership controller
// (internal/membership); raft starts when the bootstrap decides.
func (n *Node) startMesh() error {
	mcfg := meshtransport.Config{
		ListenAddr:          n.cfg.MeshListen,
		Peers:               n.cfg.Peers,
		PeerDiscovery:       new(!n.cfg.DisablePeerDiscovery),
		Password:            n.cfg.MeshPassword,
		InsecureAllowAnyone: n.cfg.MeshInsecureAllowAnyone,
		Identity:            n.ident,
		NickName:            n.cfg.Name,
		ClusterName:         n.cfg.ClusterName,
		Logger:              n.cfg.Logger.With("component", "mesh"),
	}
	release := promiseRelease
	if h := n.cfg.test; h != nil {
		mcfg.Fabric, mcfg.EntryTTL, mcfg.RefreshInterval = h.fabric, h.entryTTL, h.refresh
		if h.promiseRelease != 0 {
			release = h.promiseRelease
		}
	}
	tr, err := meshtransport.New(mcfg)
	if err != nil {
		return fmt.Errorf("meshkv: mesh: %w", err)
	}
	if err := tr.Start(); err != nil {
		return fmt.Errorf("meshkv: mesh: %w", err)
	}
	n.mesh = tr
	ctrl, err := membership.NewController(membership.ControllerConfig{
		Self:               ids.MemberID(n.id),
		ClusterName:        n.cfg.ClusterName,
		ClientURLs:         n.clientURLs,
		InitialClusterSize: n.cfg.InitialClusterSize,
		Peers:              n.cfg.Peers,
		Settle:             n.settle(),
		ReleaseAfter:       release,
		Planner: membership.Config{
			TargetVoters:      n.cfg.TargetVoters,
			DeadMemberTimeout: n.cfg.DeadMemberTimeout,
			ActiveWindow:      n.cfg.ElectionTimeout,
		},
		Interval:      membershipInterval,
		ChangeTimeout: confChangeTimeout,
		StartRaft:     n.startClusterRaft,
		Recover:       n.recoverRaft,
		Logger:        n.log.With("component", "membership"),
	}, tr)
	if err != nil {
		return fmt.Errorf("meshkv: membership: %w", err)
	}
	n.members = ctrl
	n.membersDone = make(chan struct{})
	n.wg.Go(func() {
		defer close(n.membersDone)
		if err := ctrl.Run(n.ctx); err != nil {
			n.fail(membershipFailure(err))
		}
	})
	return nil
}

// startClusterRaft starts raft for the cluster the bootstrap decided on
// (members: the initial voters; nil to join) and hands the transport the
// raft member behind the controller's gate.
func (n *Node) startClusterRaft(cluster ids.ClusterID, members []ids.MemberID) (membership.RaftMember, error) {
	if h := n.cfg.test; h != nil && h.beforeRaft != nil {
		if err := h.beforeRaft(n, members); err != nil {
			return nil, err
		}
	}
	if n.cfg.InitialSnapshot != "" && len(members) != 1 {
		return nil, fmt.Errorf("%w (cluster %s)", ErrInitialSnapshotJoin, cluster)
	}
	peers := make([]uint64, len(members))
	for i, id := range members {
		peers[i] = uint64(id)
	}
	if err := n.startRaft(uint64(cluster), peers, n.mesh); err != nil {
		return nil, err
	}
	rn := n.raft.Load()
	n.mesh.SetHandler(n.members.Gate(rn))
	return rn, nil
}

// recoverRaft carries out a recovery plan (see membership.PlanRecovery):
// it stops the raft member of the cluster that lost its quorum and starts
// this node as the only voter of the recovered cluster, from the state its
// state machine holds. The log restarts with a snapshot of that state at
// the applied index (entries received but not applied are dropped: they
// were not known to be committed), one term above the old one.
func (n *Node) recoverRaft(plan membership.RecoveryPlan) (membership.RaftMember, error) {
	old := n.raft.Load()
	if old == nil {
		return nil, membership.ErrNotMember
	}
	term := old.Status().Term
	_ = old.Close() // leaderless: no transfer; an error was reported by Done already
	st := old.Status()
	index := max(st.AppliedIndex, plan.Applied, 1)
	removed := make([]uint64, len(plan.Removed))
	for i, id := range plan.Removed {
		removed[i] = uint64(id)
	}
	err := n.startRaftWith(raftStart{cluster: uint64(plan.Cluster), peers: []uint64{n.id}, fromState: true,
		index: index, term: max(term, st.Term) + 1, removed: removed}, n.mesh)
	if err != nil {
		return nil, err
	}
	rn := n.raft.Load()
	n.mesh.SetHandler(n.members.Gate(rn))
	return rn, nil
}

// membershipFailure maps the controller's reasons to stop to the node's
// errors.
func membershipFailure(err error) error {
	switch {
	case errors.Is(err, membership.ErrRemoved):
		return fmt.Errorf("%w: %w", ErrRemoved, err)
	case errors.Is(err, ErrInitialSnapshotJoin):
		return err
	}
	return fmt.Errorf("meshkv: membership: %w", err)
}

// settle is how long this node listens before it may found a cluster.
func (n *Node) settle() time.Duration {
	if len(n.cfg.Peers) == 0 && n.cfg.InitialClusterSize <= 1 {
		return 0
	}
	return bootstrapSettle
}

// leave leaves the cluster gracefully before Close stops the node (see
// membership.Controller.Leave).
func (n *Node) leave() {
	if n.members == nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.LeaveTimeout)
	defer cancel()
	n.members.Leave(ctx)
}

// Errors of Recover.
var (
	// ErrNotRecoverable: the node has no cluster to recover (a standalone
	// node, one not yet in a cluster, or one the cluster removed).
	ErrNotRecoverable = errors.New("meshkv: nothing to recover")
	// ErrRecoveryRefused: as far as the node can tell, its cluster has not
	// lost its quorum (a leader is known, the leader was lost too recently,
	// a majority of the voters answered), or another survivor applied more
	// (recover that one). The message says which; nothing changed.
	ErrRecoveryRefused = errors.New("meshkv: recovery refused")
)

// Recovery is what Recover did.
type Recovery struct {
	// Cluster is the recovered cluster's id; Supersedes the id of the
	// cluster that lost its quorum.
	Cluster, Supersedes uint64
	// Applied is the index of the state the recovered cluster starts from.
	Applied uint64
	// Removed are the other members of the old configuration.
	Removed []uint64
}

// Recover recovers this node's cluster after it lost its quorum for good,
// as etcd's --force-new-cluster does from a data directory: this node
// becomes the only voter of a new cluster that keeps its data, and the
// leader grows it back to the target as new nodes join (see README, "Losing
// quorum"). It refuses with ErrRecoveryRefused unless, as far as this node
// can tell after asking every member of its configuration, no leader is
// known anywhere, none has been for a while, fewer than a majority of the
// voters answer, and (unless force) no member that answered applied more
// than this node.
func (n *Node) Recover(ctx context.Context, force bool) (Recovery, error) {
	if n.members == nil {
		return Recovery{}, ErrNotRecoverable
	}
	plan, err := n.members.Recover(ctx, force)
	switch {
	case errors.Is(err, membership.ErrNotMember):
		return Recovery{}, fmt.Errorf("%w: %w", ErrNotRecoverable, err)
	case errors.Is(err, membership.ErrLeaderKnown), errors.Is(err, membership.ErrTooSoon),
		errors.Is(err, membership.ErrQuorumReachable), errors.Is(err, membership.ErrNotHighest):
		return Recovery{}, fmt.Errorf("%w: %w", ErrRecoveryRefused, err)
	case err != nil:
		return Recovery{}, fmt.Errorf("meshkv: recover: %w", err)
	}
	rec := Recovery{Cluster: uint64(plan.Cluster), Supersedes: uint64(plan.Supersedes), Applied: plan.Applied}
	for _, id := range plan.Removed {
		rec.Removed = append(rec.Removed, uint64(id))
	}
	return rec, nil
}
