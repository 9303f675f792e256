package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
)

// Source is where the loop reads the world each round.
type Source interface {
	// View returns the current view. Notices in it are consumed: a later
	// View does not repeat them.
	View() View
	// Changed is signalled when the view may have changed, so that the loop
	// reacts before its next tick (nil: poll only).
	Changed() <-chan struct{}
}

// Actuator carries out the planner's decisions.
type Actuator interface {
	// ChangeMembership proposes c as one raft ConfChangeV2 (with joint
	// consensus when c.Joint()) and returns once this node applied it (and,
	// for a joint change, left the joint configuration), or it failed.
	ChangeMembership(ctx context.Context, c Change) error
	// TransferLeadership hands leadership to voter to and returns once it
	// moved or failed.
	TransferLeadership(ctx context.Context, to ids.MemberID) error
	// QueryMembership asks the members of this node's configuration (or of
	// the cluster it joins) whether it is a member. It must not block; the
	// answers arrive as Notices in later views.
	QueryMembership()
}

// LoopConfig configures a Loop. Zero values mean the defaults.
type LoopConfig struct {
	// Self is this node's member id (required).
	Self ids.MemberID
	// Planner sets the membership rules.
	Planner Config
	// Interval is the time between rounds when nothing signals a change
	// (0: 100ms).
	Interval time.Duration
	// ChangeTimeout bounds one membership change or leadership transfer
	// (0: 5s).
	ChangeTimeout time.Duration
	// Logger receives membership decisions (nil: discard).
	Logger *slog.Logger
}

// Loop runs a Planner against a live node. It owns no goroutine: Run runs on
// the caller's.
type Loop struct {
	cfg  LoopConfig
	plan *Planner
	src  Source
	act  Actuator
	log  *slog.Logger

	waiting  string
	retryAt  time.Duration // no change before this (after a failed one)
	lastFail string
}

// NewLoop returns a loop that reads src and acts through act.
func NewLoop(cfg LoopConfig, src Source, act Actuator) (*Loop, error) {
	if cfg.Interval < 0 || cfg.ChangeTimeout < 0 {
		return nil, fmt.Errorf("%w: negative loop timing", ErrInvalidConfig)
	}
	if src == nil || act == nil {
		return nil, fmt.Errorf("%w: loop needs a source and an actuator", ErrInvalidConfig)
	}
	p, err := NewPlanner(cfg.Self, cfg.Planner)
	if err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.ChangeTimeout == 0 {
		cfg.ChangeTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Loop{cfg: cfg, plan: p, src: src, act: act, log: log}, nil
}

// Run runs rounds until ctx ends (it then returns nil) or the planner
// decides that this node must stop (it returns the decision's Exit error,
// which wraps ErrRemoved). A round reads the view, steps
// the planner and carries out its decision; a membership change is waited
// for (bounded by ChangeTimeout) before the next round, so at most one is in
// flight. The planner's logical time is the time since Run started, on the
// monotonic clock.
func (l *Loop) Run(ctx context.Context) error {
	start := time.Now()
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		if err := l.round(ctx, time.Since(start)); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-l.src.Changed():
		}
	}
}

// round is one step of the loop at logical time now.
func (l *Loop) round(ctx context.Context, now time.Duration) error {
	d := l.plan.Step(now, l.src.View())
	if d.Exit != nil {
		l.log.Warn("stopping: this member is no longer part of the cluster", "reason", d.Exit)
		return d.Exit
	}
	if d.Query {
		l.log.Info("no leader for a while; asking the members whether this node is still one")
		l.act.QueryMembership()
	}
	if d.Waiting != l.waiting {
		if d.Waiting != "" {
			l.log.Info("membership not as configured", "waiting", d.Waiting)
		}
		l.waiting = d.Waiting
	}
	if d.TransferTo != 0 {
		cctx, cancel := context.WithTimeout(ctx, l.cfg.ChangeTimeout)
		err := l.act.TransferLeadership(cctx, d.TransferTo)
		cancel()
		if err != nil && ctx.Err() == nil {
			l.log.Warn("leadership transfer failed", "to", d.TransferTo.String(), "err", err)
		} else if err == nil {
			l.log.Info("handed leadership over before leaving", "to", d.TransferTo.String())
		}
	}
	if d.Change.IsZero() || now < l.retryAt {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, l.cfg.ChangeTimeout)
	err := l.act.ChangeMembership(cctx, d.Change)
	cancel()
	switch {
	case err == nil:
		l.lastFail = ""
		l.log.Info("membership changed", "change", d.Change.String(), "reason", d.Change.Reason)
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		// Shutting down.
	default:
		// Back off so that a change the cluster keeps refusing is not
		// proposed every round; log each distinct failure once.
		l.retryAt = now + l.cfg.ChangeTimeout/5
		if msg := d.Change.String() + ": " + err.Error(); msg != l.lastFail {
			l.lastFail = msg
			l.log.Warn("membership change failed", "change", d.Change.String(), "reason", d.Change.Reason, "err", err)
		}
	}
	return nil
}
