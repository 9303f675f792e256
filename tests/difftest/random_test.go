package difftest

import (
	"flag"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

var (
	seedFlag = flag.Uint64("seed", 0, "run only this seed of TestRandom (0: the default seeds)")
	opsFlag  = flag.Int("ops", 2000, "requests per random sequence in TestRandom")
)

// defaultSeeds are run by TestRandom unless -seed is given.
var defaultSeeds = []uint64{1, 2, 3, 4}

// TestRandom sends seeded random request sequences to etcd and the server
// under test, comparing every answer, the whole key space every 250 ops, and
// the watch history (all events since the compacted revision) every 500 ops
// and at the end.
func TestRandom(t *testing.T) {
	seeds := defaultSeeds
	if *seedFlag != 0 {
		seeds = []uint64{*seedFlag}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			runRandom(t, seed, *opsFlag)
		})
	}
}

func runRandom(t *testing.T, seed uint64, n int) {
	r := newRunner(t)
	r.label = fmt.Sprintf("seed %d; reproduce with: go test ./difftest -run 'TestRandom' -args -seed %d", seed, seed)
	g := newGen(seed, r.leasesSupported())
	if g.leasesOn {
		for _, id := range initialLeases {
			req := &pb.LeaseGrantRequest{ID: id, TTL: longTTL}
			g.observe(req, r.step(req))
		}
	}
	for i := range n {
		req := g.next()
		g.observe(req, r.step(req))
		if i%250 == 249 {
			r.step(allKeys())
		}
		if i%500 == 499 {
			r.compareWatchHistory(max(g.compactRev, 1), g.rev)
		}
	}
	r.step(allKeys())
	r.compareWatchHistory(max(g.compactRev, 1), g.rev)
	if g.compactRev > 1 {
		r.compareWatchCompacted(g.compactRev)
	}
	t.Logf("seed %d: %d ops, revision %d, compacted at %d, leases %v; answers:%s", seed, r.n, g.rev, g.compactRev, g.leasesOn, r.summary())
}
