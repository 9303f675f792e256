package scenario

import (
	"context"

	"github.com/meshkv/meshkv/chaos/check"
)

// SelfTest checks the harness end to end: it runs minority-partition with
// the workload reading serializably (each node answers from its own copy), so
// the isolated follower serves stale values while the majority moves on. The
// linearizability checker must catch that. It reports whether the run found a
// linearizability or revision-order violation, and the run's report.
func SelfTest(ctx context.Context, opts Options) (bool, *Report) {
	sc, _ := Find("minority-partition")
	sc.Name = "selftest-stale-reads"
	opts.Workload.SerializableReads = true
	rep := Run(ctx, sc, opts)
	for _, c := range rep.Checks {
		if (c.Check == "linearizable" || c.Check == "revisions") && c.Status == check.Fail {
			return true, rep
		}
	}
	return false, rep
}
