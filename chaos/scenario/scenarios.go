package scenario

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/meshkv/meshkv/chaos/cluster"
)

// Scenario is a named fault script and the cluster it needs.
type Scenario struct {
	Name    string
	Summary string
	// Nodes and Voters size the cluster (Voters 0: the binary's default, 3).
	Nodes  int
	Voters int
	// Short marks the scenarios of the quick suite (make chaos-short);
	// ShortNetns those the quick suite also runs in netns mode.
	Short, ShortNetns bool
	// MeshkvOnly, when set, says why the scenario does not apply to etcd
	// (it relies on meshkv's self-healing membership); etcd runs skip it.
	MeshkvOnly string
	// NeedsStarve marks scenarios that saturate a member's CPU.
	NeedsStarve bool
	// Target is the availability the scenario is judged against, if any.
	Target *Target
	// Faults injects and heals the scenario's faults.
	Faults func(ctx context.Context, e *Env) error
}

// Target is an availability goal: every member's longest write gap (see
// MemberGap) at most MaxGapET election timeouts and, when MaxMedian is
// set, the median over faults of the worst member gap at most MaxMedian.
type Target struct {
	MaxGapET  float64       `json:"max_gap_election_timeouts"`
	MaxMedian time.Duration `json:"max_median,omitempty"`
}

func (t Target) String() string {
	s := fmt.Sprintf("longest <= %g ET", t.MaxGapET)
	if t.MaxMedian > 0 {
		s += fmt.Sprintf(", median <= %v", t.MaxMedian)
	}
	return s
}

// Met reports whether a run meets the target.
func (t Target) Met(r *Report) bool {
	if r.ElectionTimeout <= 0 || len(r.Faults) == 0 {
		return false
	}
	if float64(r.LongestMemberGap) > t.MaxGapET*float64(r.ElectionTimeout) {
		return false
	}
	return t.MaxMedian == 0 || r.MedianGap <= t.MaxMedian
}

// All lists every scenario, in the order `run all` runs them.
func All() []Scenario {
	all := []Scenario{
		{
			Name:    "minority-partition",
			Summary: "3 nodes; cut one follower off from everyone, first with resets, then silently",
			Nodes:   3, Short: true,
			Faults: func(ctx context.Context, e *Env) error {
				for _, kind := range []cluster.Cut{cluster.Reset, cluster.Silent} {
					_, fs, err := e.Roles(ctx, 1)
					if err != nil {
						return err
					}
					f := fs[e.Rand.IntN(len(fs))]
					if err := e.Fault(ctx, fmt.Sprintf("isolate follower %s (%v)", f.Name, kind), e.Hold,
						func() error { return e.Cluster.Isolate(f.Name, kind) },
						e.Cluster.HealAll); err != nil {
						return err
					}
				}
				return nil
			},
		},
		{
			Name:    "majority-partition-with-leader",
			Summary: "5 voters; split 3|2 with the leader on the majority side (silent)",
			Nodes:   5, Voters: 5,
			Faults: func(ctx context.Context, e *Env) error {
				l, fs, err := e.Roles(ctx, 4)
				if err != nil {
					return err
				}
				major := []string{l.Name, fs[0].Name, fs[1].Name}
				minor := cluster.Names(fs[2:4])
				return e.Fault(ctx, fmt.Sprintf("partition %v | %v", major, minor), e.Hold,
					func() error { return e.Cluster.Partition(cluster.Silent, major, minor) },
					e.Cluster.HealAll)
			},
		},
		{
			Name:    "majority-partition-without-leader",
			Summary: "5 voters; split 2|3 with the leader on the minority side (silent): it must step down",
			Nodes:   5, Voters: 5,
			Faults: func(ctx context.Context, e *Env) error {
				l, fs, err := e.Roles(ctx, 4)
				if err != nil {
					return err
				}
				minor := []string{l.Name, fs[0].Name}
				major := cluster.Names(fs[1:4])
				return e.Fault(ctx, fmt.Sprintf("partition %v | %v", minor, major), e.Hold,
					func() error { return e.Cluster.Partition(cluster.Silent, minor, major) },
					e.Cluster.HealAll)
			},
		},
		nonTransitive("leader", cluster.Reset, false),
		nonTransitive("leader", cluster.Silent, true),
		nonTransitive("follower", cluster.Reset, false),
		nonTransitive("follower", cluster.Silent, false),
		{
			Name:    "one-way-leader",
			Summary: "3 nodes; drop only what the leader sends to a follower, then only what the follower sends to the leader (silent)",
			Nodes:   3, ShortNetns: true, Target: kernelTarget,
			Faults: func(ctx context.Context, e *Env) error {
				for _, outbound := range []bool{true, false} {
					l, fs, err := e.Roles(ctx, 1)
					if err != nil {
						return err
					}
					f := fs[0]
					from, to := l.Name, f.Name
					if !outbound {
						from, to = to, from
					}
					if err := e.Fault(ctx, fmt.Sprintf("drop %s->%s only", from, to), e.Hold,
						func() error { return e.Cluster.CutOneWay(from, to) },
						func() error { return e.Cluster.Heal(from, to) }); err != nil {
						return err
					}
				}
				return nil
			},
		},
		{
			Name:    "leader-isolated",
			Summary: "3 nodes; cut the leader off from everyone silently, heal, then the new leader with resets",
			Nodes:   3,
			Faults: func(ctx context.Context, e *Env) error {
				for _, kind := range []cluster.Cut{cluster.Silent, cluster.Reset} {
					l, err := e.Leader(ctx)
					if err != nil {
						return err
					}
					if err := e.Fault(ctx, fmt.Sprintf("isolate leader %s (%v)", l.Name, kind), e.Hold,
						func() error { return e.Cluster.Isolate(l.Name, kind) },
						e.Cluster.HealAll); err != nil {
						return err
					}
				}
				return nil
			},
		},
		{
			Name:    "flapping-link",
			Summary: "3 nodes; the leader-follower link is cut and healed every 200-700 ms, alternating resets and silent drops",
			Nodes:   3,
			Faults: func(ctx context.Context, e *Env) error {
				l, fs, err := e.Roles(ctx, 1)
				if err != nil {
					return err
				}
				f := fs[0]
				flaps := 0
				return e.Fault(ctx, fmt.Sprintf("flap %s-%s", l.Name, f.Name), 0,
					func() error {
						end := time.Now().Add(2 * e.Hold)
						for time.Now().Before(end) {
							kind := []cluster.Cut{cluster.Reset, cluster.Silent}[flaps%2]
							if err := e.Cluster.Cut(l.Name, f.Name, kind); err != nil {
								return err
							}
							if err := e.Sleep(ctx, time.Duration(200+e.Rand.IntN(500))*time.Millisecond); err != nil {
								return err
							}
							if err := e.Cluster.Heal(l.Name, f.Name); err != nil {
								return err
							}
							if err := e.Sleep(ctx, time.Duration(200+e.Rand.IntN(500))*time.Millisecond); err != nil {
								return err
							}
							flaps++
						}
						e.Notef("link flapped %d times", flaps)
						return nil
					},
					e.Cluster.HealAll)
			},
		},
		{
			Name:    "bridge",
			Summary: "5 voters; two halves that reach each other only through one bridge node (silent), the leader in a half",
			Nodes:   5, Voters: 5,
			Faults: func(ctx context.Context, e *Env) error {
				l, fs, err := e.Roles(ctx, 4)
				if err != nil {
					return err
				}
				left := []string{l.Name, fs[0].Name}
				bridge := fs[1].Name
				right := cluster.Names(fs[2:4])
				return e.Fault(ctx, fmt.Sprintf("bridge %v - %s - %v", left, bridge, right), e.Hold,
					func() error { return e.Cluster.Partition(cluster.Silent, left, right) },
					e.Cluster.HealAll)
			},
		},
		{
			Name:    "kill-and-replace",
			Summary: "3 nodes; SIGKILL the leader and start a fresh node, then the same with a follower; membership must heal",
			Nodes:   3,
			MeshkvOnly: "a fresh member joins by itself and the dead one is removed (meshkv's self-healing membership; " +
				"etcd needs an operator's member add/remove)",
			Faults: func(ctx context.Context, e *Env) error {
				for round, role := range []string{"leader", "follower"} {
					l, fs, err := e.Roles(ctx, 1)
					if err != nil {
						return err
					}
					victim := l
					if role == "follower" {
						victim = fs[0]
					}
					var fresh *cluster.Node
					err = e.Fault(ctx, fmt.Sprintf("kill %s %s, start a fresh node", role, victim.Name), e.Hold/2,
						func() error { return e.Kill(victim.Name) },
						func() error {
							n, err := e.AddNode(ctx)
							fresh = n
							return err
						})
					if err != nil {
						return err
					}
					if !e.ExpectMembers(ctx, fmt.Sprintf("membership-replaced-%d", round+1), 3, []*cluster.Node{fresh}, []*cluster.Node{victim}) {
						// The dead voter is still a member: killing another
						// one would leave no quorum, which says nothing new.
						e.Notef("membership not replaced: not killing a second voter")
						return nil
					}
				}
				return nil
			},
		},
		{
			Name:    "pause-leader",
			Summary: "3 nodes; SIGSTOP the leader for longer than the election timeout, then SIGCONT",
			Nodes:   3, Short: true,
			Faults: func(ctx context.Context, e *Env) error {
				l, err := e.Leader(ctx)
				if err != nil {
					return err
				}
				return e.Fault(ctx, fmt.Sprintf("pause leader %s", l.Name), e.Hold,
					func() error { return e.Cluster.Pause(l.Name) },
					func() error { return e.Cluster.Resume(l.Name) })
			},
		},
		{
			Name:    "random-mix",
			Summary: "5 voters; a seeded random sequence of the faults above (partitions, non-transitive and one-way cuts, stalls, pauses)",
			Nodes:   5, Voters: 5,
			Faults: randomMix,
		},
		movingCut(false),
		movingCut(true),
		cpuStarve(),
	}
	return append(all, literature()...)
}

// nonTransitive is the scenario that cuts one link of a 3-node cluster while
// both ends still reach the third node: the leader's link to a follower, or
// the link between the two followers.
func nonTransitive(which string, kind cluster.Cut, short bool) Scenario {
	summary := fmt.Sprintf("3 nodes; cut the leader's link to a follower (%v) while both still reach the other follower", kind)
	if which == "follower" {
		summary = fmt.Sprintf("3 nodes; cut the link between the two followers (%v) while both still reach the leader", kind)
	}
	return Scenario{
		Name:    fmt.Sprintf("non-transitive-%s-%v", which, kind),
		Summary: summary,
		Nodes:   3, Short: short,
		Faults: func(ctx context.Context, e *Env) error {
			l, fs, err := e.Roles(ctx, 2)
			if err != nil {
				return err
			}
			a, b := l.Name, fs[0].Name
			if which == "follower" {
				a, b = fs[0].Name, fs[1].Name
			}
			return e.Fault(ctx, fmt.Sprintf("cut %s-%s (%v)", a, b, kind), 2*e.Hold,
				func() error { return e.Cluster.Cut(a, b, kind) },
				func() error { return e.Cluster.Heal(a, b) })
		},
	}
}

// randomMix plays six faults drawn from the seeded generator.
func randomMix(ctx context.Context, e *Env) error {
	kinds := []cluster.Cut{cluster.Reset, cluster.Silent, cluster.Stall}
	for i := range 6 {
		l, fs, err := e.Roles(ctx, 0)
		if err != nil {
			return err
		}
		nodes := append([]*cluster.Node{l}, fs...)
		pick := func() *cluster.Node { return nodes[e.Rand.IntN(len(nodes))] }
		kind := kinds[e.Rand.IntN(len(kinds))]
		hold := e.Hold/2 + time.Duration(e.Rand.Int64N(int64(e.Hold)))
		var name string
		var inject func() error
		heal := e.Cluster.HealAll
		switch e.Rand.IntN(6) {
		case 0:
			n := pick()
			name = fmt.Sprintf("isolate %s (%v)", n.Name, kind)
			inject = func() error { return e.Cluster.Isolate(n.Name, kind) }
		case 1:
			perm := e.Rand.Perm(len(nodes))
			var a, b []string
			for j, p := range perm {
				if j < len(nodes)/2 {
					a = append(a, nodes[p].Name)
				} else {
					b = append(b, nodes[p].Name)
				}
			}
			name = fmt.Sprintf("partition %v | %v (%v)", a, b, kind)
			inject = func() error { return e.Cluster.Partition(kind, a, b) }
		case 2:
			perm := e.Rand.Perm(len(nodes))
			c1 := [2]string{nodes[perm[0]].Name, nodes[perm[1]].Name}
			c2 := [2]string{nodes[perm[2]].Name, nodes[perm[3]].Name}
			name = fmt.Sprintf("non-transitive cuts %s-%s and %s-%s (%v)", c1[0], c1[1], c2[0], c2[1], kind)
			inject = func() error {
				if err := e.Cluster.Cut(c1[0], c1[1], kind); err != nil {
					return err
				}
				return e.Cluster.Cut(c2[0], c2[1], kind)
			}
		case 3:
			perm := e.Rand.Perm(len(nodes))
			from, to := nodes[perm[0]].Name, nodes[perm[1]].Name
			if e.Rand.IntN(2) == 0 {
				from = l.Name
			}
			if from == to {
				to = nodes[perm[2]].Name
			}
			name = fmt.Sprintf("drop %s->%s only", from, to)
			inject = func() error { return e.Cluster.CutOneWay(from, to) }
		case 4:
			n := pick()
			name = fmt.Sprintf("pause %s", n.Name)
			inject = func() error { return e.Cluster.Pause(n.Name) }
			heal = func() error { return e.Cluster.Resume(n.Name) }
		case 5:
			name = fmt.Sprintf("cut leader %s from a follower and pause another", l.Name)
			f1, f2 := fs[0].Name, fs[1].Name
			inject = func() error {
				if err := e.Cluster.Cut(l.Name, f1, kind); err != nil {
					return err
				}
				return e.Cluster.Pause(f2)
			}
			heal = func() error {
				if err := e.Cluster.Resume(f2); err != nil {
					return err
				}
				return e.Cluster.HealAll()
			}
		}
		if err := e.Fault(ctx, fmt.Sprintf("#%d %s", i+1, name), hold, inject, heal); err != nil {
			return err
		}
	}
	return nil
}

// Find returns the scenario named name.
func Find(name string) (Scenario, bool) {
	i := slices.IndexFunc(All(), func(s Scenario) bool { return s.Name == name })
	if i < 0 {
		return Scenario{}, false
	}
	return All()[i], true
}

// ShortSuite lists the scenarios of the quick suite.
func ShortSuite() []Scenario { return filter(func(s Scenario) bool { return s.Short }) }

// ShortNetnsSuite lists the scenarios the quick suite also runs in netns
// mode: a moving cut and a one-way cut.
func ShortNetnsSuite() []Scenario { return filter(func(s Scenario) bool { return s.ShortNetns }) }

// LiteratureSuite lists the five-member scenarios of the
// partial-connectivity literature.
func LiteratureSuite() []Scenario { return literature() }

// KernelSuite lists the three-member scenarios whose faults differ most
// between proxies and the kernel: two-way and one-way silent cuts,
// isolation, a flapping link, moving cuts and CPU starvation.
func KernelSuite() []Scenario {
	var out []Scenario
	for _, n := range []string{"non-transitive-leader-silent", "one-way-leader", "leader-isolated", "flapping-link",
		"moving-cut", "moving-one-way-cut", "cpu-starve"} {
		s, _ := Find(n)
		out = append(out, s)
	}
	return out
}

func filter(keep func(Scenario) bool) []Scenario {
	var out []Scenario
	for _, s := range All() {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}
