package raftadapter_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/meshkv/meshkv/raftadapter"
	"github.com/meshkv/meshkv/raftadapter/raftadaptertest"
)

// BenchmarkSnapshotHeap measures the live heap of a three-member cluster
// holding about 20 MB of state per member after several snapshots, one of
// them sent to a lagging follower. Run with -benchtime=1x; it reports the
// heap in use per member (MB/member) after a forced collection.
func BenchmarkSnapshotHeap(b *testing.B) {
	const (
		keys     = 20_000
		valueLen = 1000
		workers  = 16
	)
	for range b.N {
		c := newCluster(b, 3, raftadaptertest.NetworkConfig{}, func(cfg *raftadapter.Config) {
			cfg.SnapshotCount = 2000
			cfg.SnapshotCatchUpEntries = 200
			cfg.Logger = nil
		})
		lead := c.waitLeader()
		lagging := c.others(lead)[0]
		c.net.Isolate(lagging)
		value := strings.Repeat("v", valueLen)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < keys; i += workers {
					if _, err := c.nodes[lead].Propose(context.Background(), raftadaptertest.Put(fmt.Sprintf("k%06d", i), value)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		c.settle()
		c.net.Rejoin(lagging)
		c.waitFor("lagging follower catches up", 50, func() bool { return c.converged(c.ids...) })
		if c.kvs[lagging].Restores() == 0 {
			b.Fatal("lagging follower did not restore a snapshot")
		}
		c.settle()
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapInuse)/3/1e6, "MB-inuse/member")
		b.ReportMetric(float64(ms.HeapAlloc)/3/1e6, "MB-live/member")
		b.ReportMetric(float64(keys*valueLen)/1e6, "MB-data/member")
		b.ReportMetric(float64(c.nodes[lead].Status().Metrics.SnapshotsTaken), "snapshots")
		held := 0
		for _, id := range c.ids {
			held += c.nodes[id].Status().Metrics.SnapshotBytesHeld
		}
		b.ReportMetric(float64(held), "snapshot-bytes-held")
		b.ReportMetric(float64(c.nodes[lead].Status().Metrics.SnapshotsWritten), "snapshots-written")
	}
}
