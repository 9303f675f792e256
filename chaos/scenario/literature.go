package scenario

import (
	"context"
	"fmt"
	"strings"

	"github.com/meshkv/meshkv/chaos/cluster"
)

// Scenarios of the partial-connectivity literature, on five voters: the
// quorum-loss, constrained-election and chained scenarios of Omni-Paxos
// (EuroSys 2023), and two failures reported against etcd and its raft
// library: a follower cut off from the leader only, and a leader whose
// messages to one follower are dropped while the follower's replies get
// through. Every cut is silent: the failure modes these reports describe
// come from links that fail without telling anyone.

// literatureTarget: each scenario should cost at most two election
// timeouts of writes on any member that can reach a majority.
var literatureTarget = &Target{MaxGapET: 2}

func literature() []Scenario {
	return []Scenario{
		{
			Name: "quorum-loss",
			Summary: "5 voters; every member but one follower (the hub) loses its links to the others, the leader included; " +
				"only the hub still reaches a majority (silent)",
			Nodes: 5, Voters: 5, Target: literatureTarget,
			Faults: func(ctx context.Context, e *Env) error {
				l, fs, err := e.Roles(ctx, 4)
				if err != nil {
					return err
				}
				hub := fs[e.Rand.IntN(len(fs))]
				keep := star(hub.Name, cluster.Names(append(fs, l)))
				return e.Fault(ctx, fmt.Sprintf("quorum loss: only %s reaches everyone (leader %s)", hub.Name, l.Name), 2*e.Hold,
					func() error { return e.Cluster.KeepOnly(cluster.Silent, keep...) },
					e.Cluster.HealAll)
			},
		},
		{
			Name: "constrained-election",
			Summary: "5 voters; a follower is cut off while writes go on without it, then the leader is isolated and the " +
				"others reach each other only through the lagging follower, the only member that reaches a majority (silent)",
			Nodes: 5, Voters: 5, Target: literatureTarget,
			Faults: func(ctx context.Context, e *Env) error {
				l, fs, err := e.Roles(ctx, 4)
				if err != nil {
					return err
				}
				lag := fs[e.Rand.IntN(len(fs))]
				keep := star(lag.Name, cluster.Names(fs))
				return e.Fault(ctx, fmt.Sprintf("constrained election: %s lags, then leader %s isolated and the rest reach each other only through %s", lag.Name, l.Name, lag.Name), 2*e.Hold,
					func() error {
						// Isolated, not only cut from the leader: meshkv
						// would relay the leader's appends otherwise, and
						// the follower would not fall behind.
						if err := e.Cluster.Isolate(lag.Name, cluster.Silent); err != nil {
							return err
						}
						e.Notef("%s isolated; writes go on without it for %v", lag.Name, e.Hold)
						if err := e.Sleep(ctx, e.Hold); err != nil {
							return err
						}
						e.Notef("isolating leader %s; %s is now the only member that reaches a majority, with the oldest log", l.Name, lag.Name)
						return e.Cluster.KeepOnly(cluster.Silent, keep...)
					},
					e.Cluster.HealAll)
			},
		},
		{
			Name: "chained",
			Summary: "5 voters linked in a chain f - L - m - f - f: the leader keeps a majority (its two neighbours), " +
				"while the members beyond the middle one reach the leader only through it (silent)",
			Nodes: 5, Voters: 5, Target: literatureTarget,
			Faults: func(ctx context.Context, e *Env) error {
				l, fs, err := e.Roles(ctx, 4)
				if err != nil {
					return err
				}
				perm := e.Rand.Perm(len(fs))
				chain := []string{fs[perm[0]].Name, l.Name, fs[perm[1]].Name, fs[perm[2]].Name, fs[perm[3]].Name}
				keep := path(chain)
				return e.Fault(ctx, fmt.Sprintf("chain %s", joinChain(chain)), 2*e.Hold,
					func() error { return e.Cluster.KeepOnly(cluster.Silent, keep...) },
					e.Cluster.HealAll)
			},
		},
		{
			Name:    "follower-cut-from-leader-only",
			Summary: "5 voters; one follower loses only its link to the leader and still reaches the three others (silent)",
			Nodes:   5, Voters: 5, Target: literatureTarget,
			Faults: func(ctx context.Context, e *Env) error {
				l, fs, err := e.Roles(ctx, 4)
				if err != nil {
					return err
				}
				f := fs[e.Rand.IntN(len(fs))]
				return e.Fault(ctx, fmt.Sprintf("cut %s-%s (leader-follower only, silent)", l.Name, f.Name), 2*e.Hold,
					func() error { return e.Cluster.Cut(l.Name, f.Name, cluster.Silent) },
					func() error { return e.Cluster.Heal(l.Name, f.Name) })
			},
		},
		{
			Name:    "one-way-leader-to-follower",
			Summary: "5 voters; what the leader sends to one follower is dropped, what the follower sends to the leader arrives",
			Nodes:   5, Voters: 5, Target: literatureTarget,
			Faults: func(ctx context.Context, e *Env) error {
				l, fs, err := e.Roles(ctx, 4)
				if err != nil {
					return err
				}
				f := fs[e.Rand.IntN(len(fs))]
				return e.Fault(ctx, fmt.Sprintf("drop %s->%s only (leader to follower)", l.Name, f.Name), 2*e.Hold,
					func() error { return e.Cluster.CutOneWay(l.Name, f.Name) },
					func() error { return e.Cluster.Heal(l.Name, f.Name) })
			},
		},
	}
}

func joinChain(names []string) string { return strings.Join(names, " - ") }

// star is the links between center and every other member of names.
func star(center string, names []string) [][2]string {
	var out [][2]string
	for _, n := range names {
		if n != center {
			out = append(out, [2]string{center, n})
		}
	}
	return out
}

// path is the links between neighbours of a chain.
func path(chain []string) [][2]string {
	var out [][2]string
	for j := 1; j < len(chain); j++ {
		out = append(out, [2]string{chain[j-1], chain[j]})
	}
	return out
}
