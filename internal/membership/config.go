package membership

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of Config.
const (
	DefaultTargetVoters = 3
	DefaultDeadMember   = 15 * time.Second
	DefaultActiveWindow = time.Second
	DefaultCatchUpFor   = 2 * time.Second
	DefaultMaxLearners  = 8
)

// ErrInvalidConfig is wrapped by every error Config.Validate returns.
var ErrInvalidConfig = errors.New("membership: invalid config")

// Config sets the planner's rules. The zero value means the defaults.
type Config struct {
	// TargetVoters is how many voters the leader grows the cluster to: 1, 3,
	// 5 or 7 (0: 3).
	TargetVoters int
	// DeadMemberTimeout is how long the leader must not have heard from a
	// member before it counts as dead (0: 15s).
	DeadMemberTimeout time.Duration
	// ActiveWindow is how recently the leader must have heard from a member
	// for it to count as active, and how far a caught-up learner may trail
	// the commit index in time (0: 1s). Set it to raft's election timeout:
	// raft clears its activity flags once per election timeout.
	ActiveWindow time.Duration
	// CatchUpFor is how long a learner must stay caught up (acknowledging
	// the leader's commit index, active) before it is promoted (0: 2s).
	CatchUpFor time.Duration
	// MaxLearners caps the learners the leader adds for joining nodes
	// (0: 8). Learners beyond the voters are spares for replacing voters.
	MaxLearners int
	// QueryAfter is how long a member must be without a known leader (or a
	// joining node without being added) before it asks the members whether
	// it was removed, and how long a member must be without a leader before
	// it accepts that a recovered cluster superseded its own (0: 3 ×
	// ActiveWindow).
	QueryAfter time.Duration
}

// Validate reports the first setting that cannot work. It changes nothing.
func (c Config) Validate() error {
	switch c.TargetVoters {
	case 0, 1, 3, 5, 7:
	default:
		return fmt.Errorf("%w: target voters %d: want 1, 3, 5 or 7", ErrInvalidConfig, c.TargetVoters)
	}
	if c.DeadMemberTimeout < 0 || c.ActiveWindow < 0 || c.CatchUpFor < 0 || c.QueryAfter < 0 {
		return fmt.Errorf("%w: negative duration", ErrInvalidConfig)
	}
	if c.MaxLearners < 0 {
		return fmt.Errorf("%w: negative learner cap", ErrInvalidConfig)
	}
	d := c.withDefaults()
	if d.DeadMemberTimeout <= d.ActiveWindow {
		return fmt.Errorf("%w: dead-member timeout %v must exceed the active window %v", ErrInvalidConfig, d.DeadMemberTimeout, d.ActiveWindow)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.TargetVoters == 0 {
		c.TargetVoters = DefaultTargetVoters
	}
	if c.DeadMemberTimeout == 0 {
		c.DeadMemberTimeout = DefaultDeadMember
	}
	if c.ActiveWindow == 0 {
		c.ActiveWindow = DefaultActiveWindow
	}
	if c.CatchUpFor == 0 {
		c.CatchUpFor = DefaultCatchUpFor
	}
	if c.MaxLearners == 0 {
		c.MaxLearners = DefaultMaxLearners
	}
	if c.QueryAfter == 0 {
		c.QueryAfter = 3 * c.ActiveWindow
	}
	return c
}
