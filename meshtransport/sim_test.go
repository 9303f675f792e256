package meshtransport_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/meshtransport"
)

// timedRecorder records when each message arrived.
type timedRecorder struct {
	mu   sync.Mutex
	got  map[[2]uint64][]time.Time // (from, to) -> arrival times
	seen map[[3]uint64]int         // (from, to, index) -> deliveries
	self uint64
}

func (r *timedRecorder) Step(m *raftpb.Message) {
	r.mu.Lock()
	k := [2]uint64{m.GetFrom(), r.self}
	r.got[k] = append(r.got[k], time.Now())
	r.seen[[3]uint64{m.GetFrom(), r.self, m.GetIndex()}]++
	r.mu.Unlock()
}
func (r *timedRecorder) ReportUnreachable(uint64)                   {}
func (r *timedRecorder) ReportSnapshot(uint64, raft.SnapshotStatus) {}

// faultState is the set of cut directions at one moment.
type faultState struct {
	at  time.Time
	cut map[[2]int]bool // from, to (node indexes)
}

// connected reports whether a and b are joined by links none of whose
// directions is cut.
func (f faultState) connected(n, a, b int) bool {
	seen := map[int]bool{a: true}
	queue := []int{a}
	for len(queue) > 0 {
		x := queue[0]
		queue = queue[1:]
		for y := range n {
			if !seen[y] && !f.cut[[2]int{x, y}] && !f.cut[[2]int{y, x}] {
				if y == b {
					return true
				}
				seen[y] = true
				queue = append(queue, y)
			}
		}
	}
	return false
}

// TestSimMovingCuts is a seeded simulation on logical time: five nodes send
// to each other every 10ms while random silent cuts (both ways and one
// way), heals and resets move around the network for a minute. Whenever two
// nodes stay connected (through any chain of uncut links), no gap between
// their messages may exceed one election timeout (1s), and no message may
// arrive twice.
func TestSimMovingCuts(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { simMovingCuts(t, seed) })
		})
	}
}

func simMovingCuts(t *testing.T, seed uint64) {
	const n = 5
	net, nodes := memCluster(t, n, func(_ int, c *meshtransport.Config) { c.Logger = nil })
	recs := make([]*timedRecorder, n)
	for i, nd := range nodes {
		recs[i] = &timedRecorder{got: map[[2]uint64][]time.Time{}, seen: map[[3]uint64]int{}, self: nd.id()}
		nd.tr.SetHandler(recs[i])
	}
	waitUntil(t, 5*time.Second, "all direct", func() bool { return allDirect(nodes) })
	rng := rand.New(rand.NewPCG(seed, 42))
	start := time.Now()
	end := start.Add(60 * time.Second)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, a := range nodes {
		wg.Go(func() {
			var index uint64
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				index++
				var batch []*raftpb.Message
				for j, b := range nodes {
					if j != i {
						batch = append(batch, msg(a.id(), b.id(), index))
					}
				}
				a.tr.Send(batch)
			}
		})
	}

	cut := map[[2]int]bool{}
	timeline := []faultState{{at: start, cut: map[[2]int]bool{}}}
	record := func() {
		c := map[[2]int]bool{}
		for k, v := range cut {
			if v {
				c[k] = true
			}
		}
		timeline = append(timeline, faultState{at: time.Now(), cut: c})
	}
	cutPairs := func() int {
		pairs := map[[2]int]bool{}
		for k, v := range cut {
			if v {
				pairs[[2]int{min(k[0], k[1]), max(k[0], k[1])}] = true
			}
		}
		return len(pairs)
	}
	for time.Now().Before(end) {
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		a, b := rng.IntN(n), rng.IntN(n)
		if a == b {
			continue
		}
		switch op := rng.IntN(4); {
		case op == 0 && cutPairs() < 2:
			net.Cut(nodes[a], nodes[b])
			cut[[2]int{a, b}], cut[[2]int{b, a}] = true, true
		case op == 1 && cutPairs() < 2:
			net.CutOneWay(nodes[a], nodes[b])
			cut[[2]int{a, b}] = true
		case op == 2:
			net.Heal(nodes[a], nodes[b])
			cut[[2]int{a, b}], cut[[2]int{b, a}] = false, false
		default:
			net.Reset(nodes[a], nodes[b])
		}
		record()
	}
	net.HealAll()
	clear(cut)
	record()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	time.Sleep(time.Second)

	stateAt := func(at time.Time) faultState {
		s := timeline[0]
		for _, f := range timeline {
			if !f.at.After(at) {
				s = f
			}
		}
		return s
	}
	// connectedThroughout reports whether a and b stayed connected over
	// [from, to], and since at least a second before from (a fault just
	// before a gap explains its start).
	connectedThroughout := func(a, b int, from, to time.Time) bool {
		if !stateAt(from.Add(-time.Second)).connected(n, a, b) {
			return false
		}
		for _, f := range timeline {
			if f.at.After(from.Add(-time.Second)) && f.at.Before(to) && !f.connected(n, a, b) {
				return false
			}
		}
		return true
	}
	worst := time.Duration(0)
	for bi, r := range recs {
		r.mu.Lock()
		for k, c := range r.seen {
			if c > 1 {
				t.Errorf("message %v delivered %d times", k, c)
			}
		}
		for ai, a := range nodes {
			if ai == bi {
				continue
			}
			times := r.got[[2]uint64{a.id(), r.self}]
			if len(times) == 0 {
				t.Errorf("nothing from node %d to node %d", ai, bi)
				continue
			}
			for i := 1; i < len(times); i++ {
				gap := times[i].Sub(times[i-1])
				if gap > time.Second && connectedThroughout(ai, bi, times[i-1], times[i]) {
					t.Errorf("gap of %v from node %d to node %d at %v, while connected", gap, ai, bi, times[i-1].Sub(start))
				}
				if connectedThroughout(ai, bi, times[i-1], times[i]) {
					worst = max(worst, gap)
				}
			}
		}
		r.mu.Unlock()
	}
	t.Logf("seed %d: %d fault changes; longest gap between connected nodes %v", seed, len(timeline)-1, worst)
}
