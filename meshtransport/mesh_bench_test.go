//go:build !race

package meshtransport

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// echoHandler answers every message it is given with a message back to the
// sender, through its own transport (not from inside Step, which must not
// send: a goroutine does it).
type echoHandler struct{ in chan *raftpb.Message }

func (h *echoHandler) Step(m *raftpb.Message) {
	select {
	case h.in <- m:
	default:
	}
}
func (h *echoHandler) ReportUnreachable(uint64)                   {}
func (h *echoHandler) ReportSnapshot(uint64, raft.SnapshotStatus) {}

// BenchmarkMeshRoundTrip measures one small raft message to a peer and its
// answer back, over two real mesh routers on loopback: the latency floor of
// every raft round (append and its response, heartbeat and its response).
func BenchmarkMeshRoundTrip(b *testing.B) {
	a, _ := meshNode(b, "a", 1, Config{})
	bb, _ := meshNode(b, "b", 2, Config{Peers: []string{a.Addr()}})
	waitFor(b, 15*time.Second, "a and b connected", func() bool { return connected(a, bb) })
	ha := &echoHandler{in: make(chan *raftpb.Message, 16)}
	hb := &echoHandler{in: make(chan *raftpb.Message, 16)}
	a.SetHandler(ha)
	bb.SetHandler(hb)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case m := <-hb.in:
				resp := newMsg(raftpb.MsgAppResp, 2, 1)
				resp.Index, resp.Term = new(m.GetIndex()), new(uint64(1))
				bb.Send([]*raftpb.Message{resp})
			}
		}
	}()
	b.ResetTimer()
	for i := range b.N {
		a.Send([]*raftpb.Message{msg(1, 2, uint64(i+1))})
		<-ha.in
	}
}
