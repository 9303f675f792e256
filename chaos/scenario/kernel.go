package scenario

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/meshkv/meshkv/chaos/cluster"
)

// Kernel-level fault scenarios on three members: a moving cut (one link cut
// for two to three holds, 8-12 s by default, healed for 3 s, then another
// link, without waiting for recovery in between: the next cut lands while
// TCP may still be backing off from the previous one), its one-way
// variant, and CPU starvation of the leader and of a follower.

const (
	movingRounds = 4
	movingHealed = 3 * time.Second
)

// kernelTarget: moving cuts and one-way cuts of three members should cost
// at most one election timeout, and typically (median) a few heartbeats.
var kernelTarget = &Target{MaxGapET: 1, MaxMedian: 300 * time.Millisecond}

func movingCut(oneWay bool) Scenario {
	sc := Scenario{
		Name: "moving-cut",
		Summary: fmt.Sprintf("3 nodes; %d times: a random link is cut both ways for 8-12 s (2-3 holds), healed for %v, then another (silent)",
			movingRounds, movingHealed),
		Nodes: 3, ShortNetns: !oneWay, Target: kernelTarget,
	}
	if oneWay {
		sc.Name = "moving-one-way-cut"
		sc.Summary = fmt.Sprintf("3 nodes; %d times: one direction of a random link is dropped for 8-12 s (2-3 holds), healed for %v, then another",
			movingRounds, movingHealed)
	}
	sc.Faults = func(ctx context.Context, e *Env) error {
		steps, err := movingSchedule(e.Rand, cluster.Names(e.Cluster.Running()), movingRounds, e.Hold)
		if err != nil {
			return err
		}
		for i, st := range steps {
			a, b := st.from, st.to
			f := FaultSpec{
				Name:   fmt.Sprintf("#%d cut %s-%s (silent)", i+1, a, b),
				Hold:   st.hold,
				Inject: func() error { return e.Cluster.Cut(a, b, cluster.Silent) },
				Heal:   func() error { return e.Cluster.Heal(a, b) },
			}
			if oneWay {
				f.Name = fmt.Sprintf("#%d drop %s->%s only", i+1, a, b)
				f.Inject = func() error { return e.Cluster.CutOneWay(a, b) }
			}
			if i < len(steps)-1 {
				f.Settle = movingHealed
			}
			if err := e.Play(ctx, f); err != nil {
				return err
			}
		}
		return nil
	}
	return sc
}

// movingStep is one cut of a moving cut: the link from-to (one-way cuts
// drop what from sends) for hold.
type movingStep struct {
	from, to string
	hold     time.Duration
}

// movingSchedule draws the cuts of a moving cut over the links between
// names: each round a link other than the previous round's, a random
// direction, and a hold between 2 and 3 times hold.
func movingSchedule(rng *rand.Rand, names []string, rounds int, hold time.Duration) ([]movingStep, error) {
	var pairs [][2]string
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			pairs = append(pairs, [2]string{names[i], names[j]})
		}
	}
	if len(pairs) < 2 {
		return nil, fmt.Errorf("%w: a moving cut needs at least 2 links, have %d", ErrSetup, len(pairs))
	}
	steps := make([]movingStep, 0, rounds)
	last := -1
	for range rounds {
		i := rng.IntN(len(pairs) - 1)
		if last >= 0 && i >= last {
			i++
		}
		last = i
		a, b := pairs[i][0], pairs[i][1]
		if rng.IntN(2) == 0 {
			a, b = b, a
		}
		steps = append(steps, movingStep{from: a, to: b, hold: 2*hold + time.Duration(rng.Int64N(int64(hold)+1))})
	}
	return steps, nil
}

func cpuStarve() Scenario {
	return Scenario{
		Name:    "cpu-starve",
		Summary: "3 nodes; saturate the CPU the leader runs on for 2 holds, then a follower's (see --starve-method)",
		Nodes:   3, NeedsStarve: true,
		Faults: func(ctx context.Context, e *Env) error {
			for _, role := range []string{StarveLeader, StarveFollower} {
				l, fs, err := e.Roles(ctx, 1)
				if err != nil {
					return err
				}
				victim := l
				if role == StarveFollower {
					victim = fs[e.Rand.IntN(len(fs))]
				}
				if err := e.Fault(ctx, fmt.Sprintf("starve %s %s", role, victim.Name), 2*e.Hold,
					func() error { return e.Cluster.Starve(victim.Name) },
					func() error { return e.unstarve(victim.Name) }); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
