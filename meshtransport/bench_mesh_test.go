//go:build !race

package meshtransport_test

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/meshtransport"
)

// echoHandler hands every message to a channel (Step must not send: a
// goroutine answers).
type echoHandler struct{ in chan *raftpb.Message }

func (h *echoHandler) Step(m *raftpb.Message) {
	select {
	case h.in <- m:
	default:
	}
}
func (h *echoHandler) ReportUnreachable(uint64)                   {}
func (h *echoHandler) ReportSnapshot(uint64, raft.SnapshotStatus) {}

// roundTrips measures one small raft message from a to b and b's answer
// back: the latency floor of every raft round.
func roundTrips(b *testing.B, a, c *memNode) {
	ha := &echoHandler{in: make(chan *raftpb.Message, 16)}
	hc := &echoHandler{in: make(chan *raftpb.Message, 16)}
	a.tr.SetHandler(ha)
	c.tr.SetHandler(hc)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case m := <-hc.in:
				resp := &raftpb.Message{Type: raftpb.MsgAppResp.Enum(), From: new(c.id()), To: new(a.id()),
					Term: new(uint64(1)), Index: new(m.GetIndex())}
				c.tr.Send([]*raftpb.Message{resp})
			}
		}
	}()
	b.ResetTimer()
	for i := range b.N {
		a.tr.Send([]*raftpb.Message{msg(a.id(), c.id(), uint64(i+1))})
		select {
		case <-ha.in:
		case <-time.After(5 * time.Second):
			b.Fatal("no answer")
		}
	}
}

// BenchmarkMeshRoundTrip: two nodes linked directly (peer links on
// loopback; the mesh is not on this path).
func BenchmarkMeshRoundTrip(b *testing.B) {
	a := realNode(b, "a", meshtransport.Config{})
	c := realNode(b, "c", meshtransport.Config{Peers: []string{a.tr.Addr()}})
	waitReal(b, 15*time.Second, "linked", func() bool {
		return pathOf(a, c) == meshtransport.PathDirect && pathOf(c, a) == meshtransport.PathDirect
	})
	roundTrips(b, a, c)
}

// BenchmarkMeshRoundTripRelayed: two nodes without a link, through a third
// one's mesh router (sealed frames, mesh over spliced links).
func BenchmarkMeshRoundTripRelayed(b *testing.B) {
	r := realNode(b, "r", meshtransport.Config{PeerDiscovery: noDiscovery()})
	a := realNode(b, "a", meshtransport.Config{PeerDiscovery: noDiscovery(), Peers: []string{r.tr.Addr()}})
	c := realNode(b, "c", meshtransport.Config{PeerDiscovery: noDiscovery(), Peers: []string{r.tr.Addr()}})
	waitReal(b, 15*time.Second, "relayed", func() bool {
		return pathOf(a, c) == meshtransport.PathRelayed && pathOf(c, a) == meshtransport.PathRelayed
	})
	roundTrips(b, a, c)
}
