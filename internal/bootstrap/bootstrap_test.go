package bootstrap

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// simNode is one node in a simulated mesh with delayed gossip.
type simNode struct {
	id       uint64
	start    time.Duration
	b        *Bootstrapper
	view     map[uint64]State // newest state received from each node
	versions map[uint64]int   // its version: like mesh gossip, an older state never replaces a newer one
	version  int
	decision *Decision
	crashAt  time.Duration // 0: never
}

type delivery struct {
	at       time.Duration
	from, to int
	version  int
	state    State
}

// simulate runs n nodes with initial cluster size size under random start
// times and gossip delays (virtual time), and returns the nodes at the end.
// With size 1, every node but the first to start is given initial peers
// (NeedPeer), as an operator adding nodes to a running one would.
func simulate(t *testing.T, seed uint64, n, size int, crashFounder bool) []*simNode {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	base := time.Unix(1_700_000_000, 0)
	cfg := Config{
		InitialClusterSize: size,
		Settle:             200 * time.Millisecond,
		ReleaseAfter:       3 * time.Second,
		Nonce:              rng.Uint64,
	}
	nodes := make([]*simNode, n)
	for i := range nodes {
		nodes[i] = &simNode{
			id:       rng.Uint64N(1<<40) + 1,
			start:    time.Duration(rng.IntN(2000)) * time.Millisecond,
			view:     map[uint64]State{},
			versions: map[uint64]int{},
		}
	}
	var queue []delivery
	const step = 20 * time.Millisecond
	for now := time.Duration(0); now < 60*time.Second; now += step {
		// Deliver gossip that has arrived.
		rest := queue[:0]
		for _, d := range queue {
			if d.at <= now {
				if to := nodes[d.to]; to.b != nil && !to.crashed(now) && d.version > to.versions[d.state.RaftID] {
					to.view[d.state.RaftID] = d.state
					to.versions[d.state.RaftID] = d.version
				}
			} else {
				rest = append(rest, d)
			}
		}
		queue = rest
		for i, nd := range nodes {
			if now < nd.start || nd.crashed(now) {
				continue
			}
			if nd.b == nil {
				c := cfg
				c.NeedPeer = size == 1 && nd.start != firstStart(nodes)
				nd.b = New(nd.id, c, base.Add(now))
			}
			var peers []Peer
			for id, s := range nd.view {
				if j := indexOf(nodes, id); j >= 0 && !nodes[j].crashed(now) {
					peers = append(peers, Peer{State: s})
				}
			}
			rng.Shuffle(len(peers), func(a, b int) { peers[a], peers[b] = peers[b], peers[a] })
			if d, ok := nd.b.Step(base.Add(now), peers); ok {
				if nd.decision != nil {
					t.Fatalf("seed %d: node %x decided twice", seed, nd.id)
				}
				nd.decision = &d
				if crashFounder && d.ClusterID != 0 && !d.Join && nd.crashAt == 0 && slices.Min(d.Members) == nd.id {
					// The founder dies right after forming.
					nd.crashAt = now + step
				}
			}
			if crashFounder && nd.crashAt == 0 && nd.b.State().Founding != nil && rng.IntN(50) == 0 {
				// A founder dies before anyone sees it form.
				nd.crashAt = now + step
			}
			st := nd.b.State()
			nd.version++
			for j := range nodes {
				if j != i {
					queue = append(queue, delivery{at: now + time.Duration(rng.IntN(300))*time.Millisecond, from: i, to: j, version: nd.version, state: st})
				}
			}
		}
		if allDecided(nodes, now) {
			break
		}
	}
	return nodes
}

func firstStart(nodes []*simNode) time.Duration {
	first := nodes[0].start
	for _, nd := range nodes {
		first = min(first, nd.start)
	}
	return first
}

func (nd *simNode) crashed(now time.Duration) bool { return nd.crashAt != 0 && now >= nd.crashAt }

func indexOf(nodes []*simNode, id uint64) int {
	for i, nd := range nodes {
		if nd.id == id {
			return i
		}
	}
	return -1
}

func allDecided(nodes []*simNode, now time.Duration) bool {
	for _, nd := range nodes {
		if !nd.crashed(now) && nd.decision == nil {
			return false
		}
	}
	return true
}

// checkOneCluster asserts the safety property: every node that formed a
// cluster formed the same one with the same members, and every live node
// belongs to it.
func checkOneCluster(t *testing.T, seed uint64, nodes []*simNode, wantAllDecided bool) {
	t.Helper()
	formed := map[uint64][]uint64{}
	for _, nd := range nodes {
		d := nd.decision
		if d == nil {
			if wantAllDecided && nd.crashAt == 0 {
				t.Fatalf("seed %d: node %x never decided", seed, nd.id)
			}
			continue
		}
		if d.Join {
			continue
		}
		if !slices.Contains(d.Members, nd.id) {
			t.Fatalf("seed %d: node %x formed cluster %x without being a member %x", seed, nd.id, d.ClusterID, d.Members)
		}
		if m, ok := formed[d.ClusterID]; ok && !slices.Equal(m, d.Members) {
			t.Fatalf("seed %d: cluster %x formed with members %x and %x", seed, d.ClusterID, m, d.Members)
		}
		formed[d.ClusterID] = d.Members
	}
	// At most one cluster has live participants (nodes that formed or joined
	// it). A founder that died right after forming may leave a cluster that
	// nobody else ever started: that one has no live participant.
	live := map[uint64]bool{}
	for _, nd := range nodes {
		if nd.decision != nil && nd.crashAt == 0 {
			live[nd.decision.ClusterID] = true
		}
	}
	if len(live) > 1 {
		t.Fatalf("seed %d: %d clusters with live participants: %v", seed, len(live), live)
	}
	for _, nd := range nodes {
		if nd.decision != nil && nd.decision.Join {
			if _, ok := formed[nd.decision.ClusterID]; !ok {
				t.Fatalf("seed %d: node %x joined cluster %x that nobody formed", seed, nd.id, nd.decision.ClusterID)
			}
		}
	}
}

func TestExactlyOneCluster(t *testing.T) {
	for seed := uint64(1); seed <= 100; seed++ {
		for _, tc := range []struct{ n, size int }{{1, 1}, {3, 3}, {5, 3}, {5, 5}, {7, 3}, {4, 1}} {
			nodes := simulate(t, seed, tc.n, tc.size, false)
			checkOneCluster(t, seed, nodes, true)
		}
	}
}

func TestFounderCrashes(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		nodes := simulate(t, seed, 6, 3, true)
		checkOneCluster(t, seed, nodes, false)
	}
}

func TestNeedPeerWaits(t *testing.T) {
	base := time.Unix(0, 0)
	b := New(5, Config{InitialClusterSize: 1, NeedPeer: true, Nonce: func() uint64 { return 1 }}, base)
	if _, ok := b.Step(base.Add(time.Minute), nil); ok {
		t.Fatal("formed alone although initial peers were configured and none was seen")
	}
	d, ok := b.Step(base.Add(time.Minute), []Peer{{State: State{RaftID: 9, ClusterID: 42}}})
	if !ok || !d.Join || d.ClusterID != 42 {
		t.Fatalf("decision = %+v %v, want join of 42", d, ok)
	}
}
