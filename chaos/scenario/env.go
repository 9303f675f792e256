package scenario

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshkv/meshkv/chaos/check"
	"github.com/meshkv/meshkv/chaos/cluster"
	"github.com/meshkv/meshkv/chaos/workload"
)

// ErrSetup is wrapped by errors a fault script returns when the cluster is
// not in a state the scenario can work with (no leader, too few nodes).
var ErrSetup = errors.New("scenario: cluster not ready for the fault")

// Env is what a fault script works with. Its methods are meant to be called
// from the script's goroutine.
type Env struct {
	// Cluster is the cluster under test.
	Cluster *cluster.Cluster
	// Rand is seeded from the run's seed; scripts draw every random choice
	// from it so that a seed replays the same choices.
	Rand *rand.Rand
	// Hold is how long a fault lasts (the scenario may scale it).
	Hold time.Duration
	// Log receives the script's notes.
	Log *slog.Logger

	w               *workload.Workload
	recoveryTimeout time.Duration

	mu       sync.Mutex
	faults   []FaultReport
	timeline []string
	members  []check.Result
}

// FaultReport is one fault of a run.
type FaultReport struct {
	Name string `json:"name"`
	// Window is from the injection to the heal.
	Window check.Window `json:"window"`
	// LongestGap is the longest stretch without a successful write inside
	// the window (filled in after the run), and Gap where it was.
	LongestGap time.Duration `json:"longest_gap"`
	Gap        check.Gap     `json:"gap"`
	// Until is the end of the fault's accounting span [Window.Start,
	// Until]: when the cluster was found healthy after the heal (or gave up
	// recovering), or, for a fault followed by another without waiting for
	// recovery, when the next one started. Per-member gaps are measured
	// over this span, so a slow recovery counts against the fault.
	Until time.Duration `json:"until"`
	// MemberGaps is every member's longest stretch without a successful
	// write by its pinned client over the span (see MemberGap).
	MemberGaps []MemberGap `json:"member_gaps,omitempty"`
	// WorstMemberGap is the longest of MemberGaps; MemberCounted is false
	// when no member could serve writes during the fault.
	WorstMemberGap time.Duration `json:"worst_member_gap"`
	MemberCounted  bool          `json:"member_counted"`
	// Recovery is how long the cluster took, after the heal, to be healthy
	// again (leader agreed, nodes caught up, reads through every node).
	// Zero when the fault did not wait for recovery (Settle).
	Recovery time.Duration `json:"recovery"`
	// RecoveryErr is set when it did not recover in time.
	RecoveryErr string `json:"recovery_err,omitempty"`
	// Settled is set when the script went on after a fixed time instead of
	// waiting for recovery.
	Settled bool `json:"settled,omitempty"`
}

// FaultSpec describes one fault for Env.Play.
type FaultSpec struct {
	Name string
	// Hold is how long the fault lasts between Inject and Heal (Inject
	// itself may take time too, e.g. a flapping link).
	Hold         time.Duration
	Inject, Heal func() error
	// Settle, when positive, is how long the script waits after the heal
	// before it goes on, instead of waiting for the cluster to recover: the
	// next fault then hits a cluster that may still be recovering (the
	// moving cut). Recovery is not measured for such a fault.
	Settle time.Duration
}

// Notef adds a line to the run's timeline.
func (e *Env) Notef(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	line := fmt.Sprintf("%8.3fs %s", e.w.Now().Seconds(), msg)
	e.mu.Lock()
	e.timeline = append(e.timeline, line)
	e.mu.Unlock()
	e.Log.Info(msg, "t", e.w.Now().Round(time.Millisecond))
}

// Sleep waits d, or returns ctx's cause early if ctx ends first.
// Chaos runs are timed by the wall clock on purpose: faults last as long as
// they would in production.
func (e *Env) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// Leader waits (up to the recovery timeout) for the leader agreed by a
// majority.
func (e *Env) Leader(ctx context.Context) (*cluster.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, e.recoveryTimeout)
	defer cancel()
	l, err := e.Cluster.WaitLeader(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSetup, err)
	}
	return l, nil
}

// Roles returns the leader and the other running nodes, sorted by name; a
// cluster with fewer than need followers is a setup error.
func (e *Env) Roles(ctx context.Context, need int) (*cluster.Node, []*cluster.Node, error) {
	l, err := e.Leader(ctx)
	if err != nil {
		return nil, nil, err
	}
	var followers []*cluster.Node
	for _, n := range e.Cluster.Running() {
		if n != l {
			followers = append(followers, n)
		}
	}
	if len(followers) < need {
		return nil, nil, fmt.Errorf("%w: want %d followers, have %d", ErrSetup, need, len(followers))
	}
	return l, followers, nil
}

// Fault injects a fault, holds it for hold, heals it, and waits for the
// cluster to recover. The window from injection to heal is reported with the
// longest stretch without a successful write inside it. The watcher is made
// to reconnect at the injection and at the heal, so watch resumption is
// exercised at the moments it is most likely to go wrong.
func (e *Env) Fault(ctx context.Context, name string, hold time.Duration, inject, heal func() error) error {
	return e.Play(ctx, FaultSpec{Name: name, Hold: hold, Inject: inject, Heal: heal})
}

// Play injects a fault, holds it, heals it, and then either waits for the
// cluster to recover or, with Settle, waits that long. See Fault.
func (e *Env) Play(ctx context.Context, f FaultSpec) error {
	start := e.w.Now()
	e.Notef("fault %q: inject", f.Name)
	if err := f.Inject(); err != nil {
		_ = f.Heal()
		return fmt.Errorf("fault %q: inject: %w", f.Name, err)
	}
	e.w.ReconnectWatch()
	if err := e.Sleep(ctx, f.Hold); err != nil {
		_ = f.Heal()
		return err
	}
	if err := f.Heal(); err != nil {
		return fmt.Errorf("fault %q: heal: %w", f.Name, err)
	}
	end := e.w.Now()
	e.Notef("fault %q: healed after %v", f.Name, (end - start).Round(time.Millisecond))
	e.w.ReconnectWatch()
	fr := FaultReport{Name: f.Name, Window: check.Window{Name: f.Name, Start: start, End: end}}
	if f.Settle > 0 {
		fr.Settled = true
		err := e.Sleep(ctx, f.Settle)
		fr.Until = e.w.Now()
		e.addFault(fr)
		return err
	}
	fr.Recovery, fr.RecoveryErr = e.recover(ctx)
	fr.Until = e.w.Now()
	e.addFault(fr)
	return ctx.Err()
}

func (e *Env) addFault(fr FaultReport) {
	e.mu.Lock()
	e.faults = append(e.faults, fr)
	e.mu.Unlock()
}

// recover waits for the cluster to be healthy and reports how long it took.
func (e *Env) recover(ctx context.Context) (time.Duration, string) {
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, e.recoveryTimeout)
	defer cancel()
	if err := e.Cluster.WaitHealthy(rctx); err != nil {
		if ctx.Err() != nil {
			return time.Since(start), "interrupted"
		}
		e.Notef("not recovered after %v: %v", e.recoveryTimeout, err)
		return time.Since(start), err.Error()
	}
	d := time.Since(start)
	e.Notef("recovered in %v", d.Round(time.Millisecond))
	return d, ""
}

// Kill kills node name and takes it out of the workload.
func (e *Env) Kill(name string) error {
	n, err := e.Cluster.Node(name)
	if err != nil {
		return err
	}
	if err := e.Cluster.Kill(name); err != nil {
		return err
	}
	e.Notef("killed %s (pid %d)", name, n.PID())
	return e.w.RemoveEndpoint(n.ClientURL)
}

// AddNode starts a fresh node, waits for it to join and gives it a pinned
// workload client.
func (e *Env) AddNode(ctx context.Context) (*cluster.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, e.recoveryTimeout)
	defer cancel()
	n, err := e.Cluster.AddNode(ctx)
	if err != nil {
		return nil, err
	}
	e.Notef("started fresh node %s (pid %d), joined as %x", n.Name, n.PID(), n.ID())
	return n, e.w.AddEndpoint(n.ClientURL)
}

// ExpectMembers waits up to the recovery timeout until the raft membership
// has want voters, includes every node in mustVote as a voter and none of the
// nodes in gone, and records the outcome as a check named name. It reports
// whether the membership became as expected.
func (e *Env) ExpectMembers(ctx context.Context, name string, want int, mustVote, gone []*cluster.Node) bool {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, e.recoveryTimeout)
	defer cancel()
	var last string
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		ok, desc := e.membersOK(ctx, want, mustVote, gone)
		last = desc
		if ok {
			e.addMemberResult(check.Result{Check: name, Status: check.Pass, Detail: fmt.Sprintf("%s after %v", desc, time.Since(start).Round(time.Millisecond))})
			e.Notef("membership: %s", desc)
			return true
		}
		select {
		case <-ctx.Done():
			e.addMemberResult(check.Result{Check: name, Status: check.Fail, Detail: fmt.Sprintf("not within %v", e.recoveryTimeout),
				Violations: []string{"membership stayed: " + last}})
			e.Notef("membership not as expected: %s", last)
			return false
		case <-t.C:
		}
	}
}

// snapshot returns copies of what the script recorded.
func (e *Env) snapshot() (faults []FaultReport, members []check.Result, timeline []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.faults), slices.Clone(e.members), slices.Clone(e.timeline)
}

func (e *Env) addMemberResult(r check.Result) {
	e.mu.Lock()
	e.members = append(e.members, r)
	e.mu.Unlock()
}

func (e *Env) membersOK(ctx context.Context, want int, mustVote, gone []*cluster.Node) (bool, string) {
	ms, err := e.Cluster.Members(ctx)
	if err != nil {
		return false, err.Error()
	}
	voters := map[uint64]bool{}
	all := map[uint64]bool{}
	var desc []string
	for _, m := range ms {
		all[m.ID] = true
		role := "voter"
		if m.IsLearner {
			role = "learner"
		} else {
			voters[m.ID] = true
		}
		name := m.Name
		if name == "" {
			name = fmt.Sprintf("%x", m.ID)
		}
		desc = append(desc, name+"="+role)
	}
	s := fmt.Sprintf("%d voters [%s]", len(voters), strings.Join(desc, " "))
	if len(voters) != want {
		return false, s
	}
	for _, n := range mustVote {
		if !voters[n.ID()] {
			return false, s
		}
	}
	for _, n := range gone {
		if all[n.ID()] {
			return false, s
		}
	}
	return true, s
}

// starve saturates the CPU of the member with the given role and returns its
// name.
func (e *Env) starve(ctx context.Context, role string) (string, error) {
	l, fs, err := e.Roles(ctx, 1)
	if err != nil {
		return "", err
	}
	victim := l
	if role == StarveFollower {
		victim = fs[e.Rand.IntN(len(fs))]
	}
	if err := e.Cluster.Starve(victim.Name); err != nil {
		return "", fmt.Errorf("starving %s: %w", victim.Name, err)
	}
	e.Notef("starving the CPU of %s %s (pid %d) until the script ends", role, victim.Name, victim.PID())
	return victim.Name, nil
}

// unstarve gives member name its CPU back and notes how much it got while
// starved.
func (e *Env) unstarve(name string) error {
	if err := e.Cluster.Unstarve(name); err != nil {
		return err
	}
	if st, err := e.Cluster.LastStarve(name); err == nil {
		e.Notef("%s has its CPU back; %v", name, st)
	}
	return nil
}
