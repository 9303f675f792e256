//go:build !race

// Real mesh routers race inside mesh itself (see mesh_test.go), so this
// runnable example is left out of -race builds.

package meshtransport_test

import (
	"fmt"
	"net"
	"time"

	"github.com/meshkv/meshkv/meshtransport"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// printer is a Handler that forwards stepped messages to a channel.
type printer chan *raftpb.Message

func (p printer) Step(m *raftpb.Message)                     { p <- m }
func (p printer) ReportUnreachable(uint64)                   {}
func (p printer) ReportSnapshot(uint64, raft.SnapshotStatus) {}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func Example() {
	secret := []byte("a long random shared secret")
	a, err := meshtransport.New(meshtransport.Config{ListenAddr: freePort(), Password: secret, NickName: "a"})
	if err != nil {
		panic(err)
	}
	defer a.Close()
	b, err := meshtransport.New(meshtransport.Config{ListenAddr: freePort(), Password: secret, NickName: "b", Peers: []string{a.Addr()}})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	got := make(printer, 1)
	b.SetHandler(got)
	a.SetMeta(meshtransport.Meta{RaftID: 1, Role: "voter"})
	b.SetMeta(meshtransport.Meta{RaftID: 2, Role: "voter"})
	if err := a.Start(); err != nil {
		panic(err)
	}
	if err := b.Start(); err != nil {
		panic(err)
	}

	// Wait until a knows raft id 2 and its probes reach it.
	deadline := time.After(15 * time.Second)
	for ready := false; !ready; {
		select {
		case <-a.Changes():
		case <-deadline:
			panic("peers never met")
		}
		for _, p := range a.Peers() {
			ready = ready || (p.Meta.RaftID == 2 && p.Live)
		}
	}

	a.Send([]*raftpb.Message{{Type: raftpb.MsgHeartbeat.Enum(), From: new(uint64(1)), To: new(uint64(2)), Term: new(uint64(1))}})
	m := <-got
	fmt.Println(m.GetType(), "from", m.GetFrom(), "to", m.GetTo())
	// Output: MsgHeartbeat from 1 to 2
}
