package membership

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
	"github.com/meshkv/meshkv/meshtransport"
)

// surveyWait bounds how long Recover waits for the members' answers.
const surveyWait = 2 * time.Second

// survey collects the answers to one recovery survey (guarded by
// Controller.mu).
type survey struct {
	nonce   uint64
	answers map[ids.MemberID]Survivor
}

// recoverRequest hands a recovery plan to the Run goroutine, which swaps the
// raft member (see applyRecovery).
type recoverRequest struct {
	plan  RecoveryPlan
	reply chan error
}

// Recover recovers this node's cluster after it lost its quorum for good:
// it surveys the members of its configuration (a membership query to each,
// answered from their applied state), checks with PlanRecovery that the
// quorum is really lost and that this node applied the most of all that
// answered (unless force), and then restarts this node's raft member as the
// only voter of a new cluster that keeps its state machine (see
// ControllerConfig.Recover). Run must be running. It returns the plan it
// carried out.
func (c *Controller) Recover(ctx context.Context, force bool) (RecoveryPlan, error) {
	r := c.Raft()
	if r == nil {
		return RecoveryPlan{}, fmt.Errorf("%w: not in a cluster yet", ErrNotMember)
	}
	if c.cfg.Recover == nil {
		return RecoveryPlan{}, fmt.Errorf("%w: recovery is not wired", ErrInvalidConfig)
	}
	st := r.Status()
	members := append(toIDs(st.Voters), toIDs(st.Learners)...)
	s := &survey{nonce: rand.Uint64() | 1, answers: map[ids.MemberID]Survivor{}}
	c.mu.Lock()
	c.survey = s
	c.mu.Unlock()
	for _, id := range members {
		if id != c.cfg.Self {
			_ = c.mesh.SendMember(id, meshtransport.MemberMessage{Kind: meshtransport.MemberQuery, Nonce: s.nonce}) // unanswered is "not reached"
		}
	}
	c.awaitSurvey(ctx, s, len(members)-1)
	c.mu.Lock()
	c.survey = nil
	others := make([]Survivor, 0, len(s.answers))
	for _, a := range s.answers {
		others = append(others, a)
	}
	c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return RecoveryPlan{}, err
	}

	st = r.Status()
	in := RecoveryInput{
		Self: Survivor{ID: c.cfg.Self, Cluster: c.ClusterID(), Applied: st.AppliedIndex,
			Lead: ids.MemberID(st.Leader), Removed: st.Removed},
		Voters:        toIDs(st.Voters),
		Learners:      toIDs(st.Learners),
		Others:        others,
		LeaderlessFor: c.leaderlessFor(time.Now()),
		Force:         force,
		Nonce:         rand.Uint64(),
	}
	plan, err := PlanRecovery(c.cfg.Planner, in)
	if err != nil {
		c.log.Warn("recovery refused", "err", err, "answered", len(others), "members", len(members))
		return RecoveryPlan{}, err
	}
	req := recoverRequest{plan: plan, reply: make(chan error, 1)}
	select {
	case c.recoverc <- req:
	case <-ctx.Done():
		return RecoveryPlan{}, ctx.Err()
	}
	select {
	case err := <-req.reply:
		return plan, err
	case <-ctx.Done():
		// The Run goroutine still carries it out: the outcome is unknown.
		return plan, fmt.Errorf("membership: recovery outcome unknown: %w", ctx.Err())
	}
}

// awaitSurvey polls until want members answered, surveyWait passed or ctx
// ended.
func (c *Controller) awaitSurvey(ctx context.Context, s *survey, want int) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	deadline := time.NewTimer(surveyWait)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		n := len(s.answers)
		c.mu.Unlock()
		if n >= want {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-t.C:
		}
	}
}

// recordSurvey records a member's answer to the current survey.
func (c *Controller) recordSurvey(m meshtransport.MemberMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.survey == nil || m.Nonce != c.survey.nonce {
		return
	}
	cluster := m.ClusterID
	if cluster == 0 {
		cluster = c.ClusterID() // a member that is in no cluster does not count
	}
	c.survey.answers[m.From] = Survivor{ID: m.From, Cluster: cluster, Applied: m.Index, Lead: m.Leader,
		Removed: m.Status == meshtransport.StatusRemoved}
}

// noteLeader tracks since when this node has known no leader (for
// Recover's PlanRecovery input).
func (c *Controller) noteLeader(lead uint64, now time.Time) {
	if lead != 0 {
		c.leaderless.Store(0)
		return
	}
	c.leaderless.CompareAndSwap(0, now.UnixNano())
}

func (c *Controller) leaderlessFor(now time.Time) time.Duration {
	since := c.leaderless.Load()
	if since == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, since))
}

// takeRecovery carries out a recovery request, if one is pending, on the
// Run goroutine: between two rounds, so that no membership change is in
// flight while the raft member is swapped.
func (c *Controller) takeRecovery() {
	select {
	case req := <-c.recoverc:
		req.reply <- c.applyRecovery(req.plan)
	default:
	}
}

func (c *Controller) applyRecovery(plan RecoveryPlan) error {
	r, err := c.cfg.Recover(plan)
	if err != nil {
		return fmt.Errorf("membership: recover cluster %s: %w", plan.Cluster, err)
	}
	c.cluster.Store(uint64(plan.Cluster))
	c.mesh.SetClusterID(plan.Cluster)
	c.raft.Store(&raftBox{r})
	c.boot.Recovered(plan.Cluster)
	c.leaderless.Store(0)
	c.log.Warn("recovered the cluster from this member's state as the only voter of a new cluster",
		"cluster", plan.Cluster.String(), "supersedes", plan.Supersedes.String(),
		"applied", plan.Applied, "removed", fmt.Sprint(plan.Removed))
	return nil
}
