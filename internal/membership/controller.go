package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Mesh is what the Controller uses of the transport (a
// *meshtransport.Transport satisfies it).
type Mesh interface {
	Peers() []meshtransport.Peer
	PeerTargets() []meshtransport.PeerTarget
	Changes() <-chan struct{}
	SetMeta(meshtransport.Meta)
	SetClusterID(ids.ClusterID)
	SendMember(to ids.MemberID, m meshtransport.MemberMessage) error
	MemberMessages() <-chan meshtransport.MemberMessage
}

// RaftMember is what the Controller uses of a raft member (a
// *raftadapter.Node satisfies it).
type RaftMember interface {
	Status() raftadapter.Status
	ChangeMembership(ctx context.Context, changes []raftadapter.ConfChange, context []byte) error
	TransferLeadership(ctx context.Context, to uint64) error
	WasRemoved(id uint64) bool
}

var (
	_ Mesh       = (*meshtransport.Transport)(nil)
	_ RaftMember = (*raftadapter.Node)(nil)
)

// Roles as the transport entry carries them (Meta.Role).
const (
	roleSeeking = "seeking"
	roleJoining = "joining"
	roleVoter   = "voter"
	roleLearner = "learner"
	roleLeaving = "leaving"
)

func parseRole(s string) Role {
	switch s {
	case roleSeeking:
		return RoleSeeking
	case roleJoining:
		return RoleJoining
	case roleVoter:
		return RoleVoter
	case roleLearner:
		return RoleLearner
	case roleLeaving:
		return RoleLeaving
	}
	return RoleUnknown
}

// ControllerConfig configures a Controller. Zero values mean the defaults.
type ControllerConfig struct {
	// Self is this node's member id (required).
	Self ids.MemberID
	// ClusterName: peers gossiping another name are ignored.
	ClusterName string
	// ClientURLs are published in this node's entry.
	ClientURLs []string
	// InitialClusterSize, Peers (the configured peer addresses), Settle and
	// ReleaseAfter drive the bootstrap (see internal/bootstrap).
	InitialClusterSize int
	Peers              []string
	Settle             time.Duration
	ReleaseAfter       time.Duration
	// Planner sets the membership rules.
	Planner Config
	// Interval and ChangeTimeout: see LoopConfig.
	Interval      time.Duration
	ChangeTimeout time.Duration
	// StartRaft starts this node's raft member once the bootstrap decided:
	// members are the initial voters of a new cluster, or nil to join
	// cluster. Required.
	StartRaft func(cluster ids.ClusterID, members []ids.MemberID) (RaftMember, error)
	// Recover carries out a recovery plan (see Controller.Recover): it stops
	// the current raft member and starts one that is the only voter of
	// plan.Cluster, from the state machine's state at plan.Applied, with
	// plan.Removed as removed ids. nil: Recover refuses.
	Recover func(plan RecoveryPlan) (RaftMember, error)
	// Logger receives membership decisions (nil: discard).
	Logger *slog.Logger
}

// Controller runs a node's membership on a mesh: the bootstrap until the
// node is in a cluster, then a Loop around the Planner; it publishes the
// node's role and bootstrap state in its transport entry, asks to join,
// answers membership queries, tells removed members so (Gate), and leaves
// gracefully (Leave).
//
// Run owns one goroutine (the caller's). The other methods are safe to call
// from any goroutine.
type Controller struct {
	cfg  ControllerConfig
	log  *slog.Logger
	mesh Mesh
	boot *bootstrap.Bootstrapper
	loop *Loop

	raft       atomic.Pointer[raftBox]
	cluster    atomic.Uint64
	leaving    atomic.Bool
	leaderless atomic.Int64 // unix nanoseconds since when no leader is known (0: one is)
	recoverc   chan recoverRequest

	mu        sync.Mutex
	known     map[ids.MemberID]PeerInfo
	conflicts []ids.ClusterID
	notified  map[ids.MemberID]time.Time // last removal notice sent to each removed sender
	survey    *survey                    // the recovery survey in progress (nil: none)

	// Owned by the Run goroutine.
	start      time.Time
	joinReqs   map[ids.MemberID]time.Time // join requests received, when
	lastJoin   time.Time                  // when this node last sent join requests
	queryNonce uint64
	replies    []Notice // notices received since the last view
	lastMeta   meshtransport.Meta
	bootWait   string    // the bootstrap's last logged reason to wait
	bootLogged time.Time // when it was logged
}

// raftBox holds the current raft member (swapped by a recovery).
type raftBox struct{ r RaftMember }

// PeerInfo is what a peer says about itself.
type PeerInfo struct {
	Name       string
	ClientURLs []string
}

// Timing of the controller's messages.
const (
	joinEvery     = time.Second     // join requests while not yet a member
	noticeEvery   = time.Second     // removal notices to one removed sender
	joinRequestOK = 5 * time.Second // a join request counts that long
)

// NewController returns a controller for a node on mesh.
func NewController(cfg ControllerConfig, mesh Mesh) (*Controller, error) {
	if cfg.StartRaft == nil || mesh == nil {
		return nil, fmt.Errorf("%w: the controller needs a mesh and StartRaft", ErrInvalidConfig)
	}
	c := &Controller{
		cfg:      cfg,
		log:      cfg.Logger,
		mesh:     mesh,
		known:    map[ids.MemberID]PeerInfo{},
		notified: map[ids.MemberID]time.Time{},
		joinReqs: map[ids.MemberID]time.Time{},
		recoverc: make(chan recoverRequest),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	loop, err := NewLoop(LoopConfig{Self: cfg.Self, Planner: cfg.Planner, Interval: cfg.Interval,
		ChangeTimeout: cfg.ChangeTimeout, Logger: c.log}, c, c)
	if err != nil {
		return nil, err
	}
	c.loop = loop
	c.boot = bootstrap.New(cfg.Self, bootstrap.Config{
		InitialClusterSize: cfg.InitialClusterSize,
		Settle:             cfg.Settle,
		ReleaseAfter:       cfg.ReleaseAfter,
		ListedPeers:        cfg.Peers,
		Nonce:              rand.Uint64,
	}, time.Now())
	c.publish(roleSeeking)
	return c, nil
}

// Run runs the bootstrap and then the membership loop until ctx ends
// (returning nil) or this node must stop: it returns the error that says
// why (wrapping ErrRemoved, or StartRaft's error). After
// a graceful Leave, the removal ends Run with nil.
func (c *Controller) Run(ctx context.Context) error {
	c.start = time.Now()
	if err := c.runBootstrap(ctx); err != nil || ctx.Err() != nil {
		return err
	}
	err := c.loop.Run(ctx)
	if err != nil && c.leaving.Load() && errors.Is(err, ErrRemoved) {
		c.log.Info("left the cluster")
		return nil
	}
	return err
}

// Raft returns the current raft member (nil before the node is in a
// cluster).
func (c *Controller) Raft() RaftMember {
	if b := c.raft.Load(); b != nil {
		return b.r
	}
	return nil
}

// ClusterID returns the cluster this node is in (0 before).
func (c *Controller) ClusterID() ids.ClusterID { return ids.ClusterID(c.cluster.Load()) }

// Peers returns what every peer of our cluster name says about itself.
func (c *Controller) Peers() map[ids.MemberID]PeerInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.known
}

// Errors reports conditions an operator must see: other clusters of the
// same name on the mesh.
func (c *Controller) Errors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, id := range c.conflicts {
		out = append(out, fmt.Sprintf("another cluster %s named %q is on the mesh (not merged)", id, c.cfg.ClusterName))
	}
	return out
}

// Leave announces that this node is leaving and waits (bounded by ctx)
// until the cluster removed it, so that it is replaced at once instead of
// after the dead-member timeout. A leader hands leadership over first; a
// sole voter hands the cluster to a caught-up learner if there is one. Run
// must be running. A node that is the only member just returns.
func (c *Controller) Leave(ctx context.Context) {
	r := c.Raft()
	if r == nil {
		return
	}
	st := r.Status()
	self := uint64(c.cfg.Self)
	if st.Removed || len(st.Voters)+len(st.Learners) <= 1 {
		return
	}
	c.leaving.Store(true) // the loop announces it within a round
	t := time.NewTicker(c.loop.cfg.Interval)
	defer t.Stop()
	for {
		if r := c.Raft(); r == nil || r.Status().Removed || r.WasRemoved(self) {
			c.log.Info("left the cluster")
			return
		}
		select {
		case <-ctx.Done():
			c.log.Warn("stopping without having been removed; the leader removes this member after the dead-member timeout")
			return
		case <-t.C:
		}
	}
}

// runBootstrap steps the bootstrap until this node formed or joined a
// cluster and its raft member runs.
func (c *Controller) runBootstrap(ctx context.Context) error {
	t := time.NewTicker(c.loop.cfg.Interval)
	defer t.Stop()
	for {
		c.drainMessages(time.Now())
		now := time.Now()
		d, decided := c.boot.Step(now, c.bootView())
		c.logBootWait(now)
		if decided {
			return c.enter(d)
		}
		c.publish(roleSeeking)
		select {
		case <-ctx.Done():
			return nil
		case <-c.mesh.Changes():
		case <-t.C:
		}
	}
}

// Rate limits of the bootstrap's progress log.
const (
	bootLogMin    = time.Second      // between two lines
	bootLogRepeat = 10 * time.Second // the same reason again, while waiting
)

// logBootWait logs, at info, who the bootstrap waits for and why: when the
// reason changes (at most once per bootLogMin) and again every
// bootLogRepeat while it stays.
func (c *Controller) logBootWait(now time.Time) {
	w := c.boot.Waiting()
	if w == "" {
		return
	}
	since := now.Sub(c.bootLogged)
	if (w != c.bootWait && since >= bootLogMin) || since >= bootLogRepeat {
		c.log.Info("bootstrap waiting", "for", w, "seeking_for", now.Sub(c.start).Round(time.Second).String())
		c.bootWait, c.bootLogged = w, now
	}
}

// enter starts raft for the cluster the bootstrap decided on.
func (c *Controller) enter(d bootstrap.Decision) error {
	var members []ids.MemberID
	if !d.Join {
		members = d.Members
	}
	r, err := c.cfg.StartRaft(d.ClusterID, members)
	if err != nil {
		return fmt.Errorf("membership: start raft for cluster %s: %w", d.ClusterID, err)
	}
	c.cluster.Store(uint64(d.ClusterID))
	c.mesh.SetClusterID(d.ClusterID)
	c.raft.Store(&raftBox{r})
	c.setConflicts(d.Conflict)
	if d.Join {
		c.log.Info("joining an existing cluster", "cluster", d.ClusterID.String())
		c.publish(roleJoining)
	} else {
		c.log.Info("formed a cluster", "cluster", d.ClusterID.String(), "members", fmt.Sprint(d.Members))
		c.publish(roleVoter)
	}
	return nil
}

func (c *Controller) setConflicts(list []ids.ClusterID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(list) > 0 && !slices.Equal(list, c.conflicts) {
		c.log.Error("another cluster with the same name is on the mesh; it is not merged",
			"cluster_name", c.cfg.ClusterName, "ours", c.ClusterID().String(), "others", fmt.Sprint(list))
	}
	c.conflicts = list
}
