package meshtransport

import (
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/raftwire"
	"go.etcd.io/raft/v3/raftpb"
)

// BenchmarkEncodeMsgApp measures framing one small MsgApp into a reused
// batch buffer (the per-message cost on the send path).
func BenchmarkEncodeMsgApp(b *testing.B) {
	m := msg(1, 2, 7)
	buf := make([]byte, 0, 1<<20)
	b.ReportAllocs()
	for b.Loop() {
		if len(buf) > 1<<19 {
			buf = buf[:0]
		}
		var err error
		if buf, err = appendRaftMsg(buf, m, raftwire.Size(m)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemSendBatches64 pushes batches of 64 messages through two
// in-memory transports (queue, sender, framing, inbound decode, Step).
func BenchmarkMemSendBatches64(b *testing.B) {
	n := newMemNet()
	mk := func(id uint64) (*Transport, *countingHandler) {
		cfg := Config{ProbeInterval: time.Second}.withDefaults()
		n.mu.Lock()
		n.next++
		name := n.next
		n.mu.Unlock()
		tr, err := newTransport(cfg, name)
		if err != nil {
			b.Fatal(err)
		}
		tr.net = &memEndpoint{n: n, self: name}
		h := &countingHandler{c: make(chan struct{}, 1)}
		tr.SetHandler(h)
		tr.SetMeta(Meta{RaftID: id})
		n.add(tr)
		b.Cleanup(func() { _ = tr.Close() })
		return tr, h
	}
	a, _ := mk(1)
	_, hb := mk(2)
	for (*a.byRaft.Load())[2] == nil {
		time.Sleep(time.Millisecond)
	}
	batch := make([]*raftpb.Message, 64)
	for i := range batch {
		batch[i] = msg(1, 2, uint64(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		hb.want.Add(64)
		a.Send(batch)
		for hb.got.Load() < hb.want.Load() {
			<-hb.c
		}
	}
	b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "msgs/s")
}
