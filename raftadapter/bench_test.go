package raftadapter_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshkv/meshkv/raftadapter"
	"github.com/meshkv/meshkv/raftadapter/raftadaptertest"
)

// benchCluster starts size nodes with the real ticker and waits for a leader.
func benchCluster(b *testing.B, size int) (*cluster, uint64) {
	b.Helper()
	c := newCluster(b, size, raftadaptertest.NetworkConfig{}, func(cfg *raftadapter.Config) {
		cfg.DisableTicker = false
		cfg.TickInterval = 10 * time.Millisecond
	})
	var lead uint64
	eventually(b, 30*time.Second, "leader", func() bool {
		lead = c.leaderAmong(c.ids...)
		return lead != 0
	})
	return c, lead
}

func benchPropose(b *testing.B, n *raftadapter.Node) {
	value := strings.Repeat("v", 64)
	var ctr atomic.Uint64
	b.SetParallelism(16) // 16 proposers per CPU
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			key := "k" + strconv.FormatUint(ctr.Add(1)%1024, 10)
			if _, err := n.Propose(ctx, raftadaptertest.Put(key, value)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	m := n.Status().Metrics
	if m.ProposalBatches > 0 {
		b.ReportMetric(float64(m.Proposals)/float64(m.ProposalBatches), "proposals/batch")
	}
}

func BenchmarkProposeSingleNode(b *testing.B) {
	c, lead := benchCluster(b, 1)
	benchPropose(b, c.nodes[lead])
}

func Benchmark3Nodes(b *testing.B) {
	c, lead := benchCluster(b, 3)
	b.Run("via leader", func(b *testing.B) { benchPropose(b, c.nodes[lead]) })
	b.Run("via follower", func(b *testing.B) { benchPropose(b, c.nodes[c.others(lead)[0]]) })
	b.Run("read index via follower", func(b *testing.B) {
		n := c.nodes[c.others(lead)[0]]
		before := n.Status().Metrics
		b.SetParallelism(16)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := n.ReadIndex(context.Background()); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		m := n.Status().Metrics
		if rounds := m.ReadRounds - before.ReadRounds; rounds > 0 {
			b.ReportMetric(float64(m.ReadRequests-before.ReadRequests)/float64(rounds), "reads/round")
		}
	})
}
