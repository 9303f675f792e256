//go:build !race

package meshtransport

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// echoHandler answers every message it is given with a message back to the
// sender, through its own transport (not from inside Step, which must not
// send: a goroutine does it).
type echoHandler struct{ in chan raftpb.Message }

func (h *echoHandler) Step(m raftpb.Message) {
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
	mk := func(nick string, id uint64, peers []string) (*Transport, *echoHandler) {
		cfg := Config{NickName: nick, Peers: peers, ListenAddr: freeAddrB(b), Logger: discardLogger()}
		tr, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		h := &echoHandler{in: make(chan raftpb.Message, 16)}
		tr.SetHandler(h)
		tr.SetMeta(Meta{RaftID: id, Role: "voter"})
		if err := tr.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = tr.Close() })
		return tr, h
	}
	a, ha := mk("a", 1, nil)
	bb, hb := mk("b", 2, []string{a.Addr()})
	deadline := time.Now().Add(15 * time.Second)
	for !connected(a, bb) {
		if time.Now().After(deadline) {
			b.Fatal("not connected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case m := <-hb.in:
				bb.Send([]raftpb.Message{{Type: raftpb.MsgAppResp, From: 2, To: 1, Index: m.Index, Term: 1}})
			}
		}
	}()
	b.ResetTimer()
	for i := range b.N {
		a.Send([]raftpb.Message{msg(1, 2, uint64(i+1))})
		<-ha.in
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func freeAddrB(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
