//go:build !race

// Real mesh routers race inside mesh itself (see mesh_test.go), so this
// runnable example is left out of -race builds.

package meshtransport_test

import (
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/meshtransport"
)

// printer is a Handler that forwards stepped messages to a channel.
type printer chan *raftpb.Message

func (p printer) Step(m *raftpb.Message)                     { p <- m }
func (p printer) ReportUnreachable(uint64)                   {}
func (p printer) ReportSnapshot(uint64, raft.SnapshotStatus) {}

func Example() {
	secret := []byte("contents of a password file, long and random")
	a, err := meshtransport.New(meshtransport.Config{ListenAddr: "127.0.0.1:0", Password: secret, NickName: "a"})
	if err != nil {
		panic(err)
	}
	defer a.Close()
	if err := a.Start(); err != nil {
		panic(err)
	}
	b, err := meshtransport.New(meshtransport.Config{ListenAddr: "127.0.0.1:0", Password: secret, NickName: "b", Peers: []string{a.Addr()}})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	got := make(printer, 1)
	b.SetHandler(got)
	if err := b.Start(); err != nil {
		panic(err)
	}

	// Raft ids come from the nodes' keys. Wait until a has a path to b.
	ida, idb := uint64(a.RaftID()), uint64(b.RaftID())
	deadline := time.After(15 * time.Second)
	for ready := false; !ready; {
		select {
		case <-a.Changes():
		case <-deadline:
			panic("the nodes never met")
		}
		for _, p := range a.Peers() {
			ready = ready || (uint64(p.ID) == idb && p.Path == meshtransport.PathDirect)
		}
	}
	a.Send([]*raftpb.Message{{Type: raftpb.MsgHeartbeat.Enum(), From: new(ida), To: new(idb), Term: new(uint64(1))}})
	m := <-got
	fmt.Println(m.GetType(), "from a:", m.GetFrom() == ida)
	// Output: MsgHeartbeat from a: true
}
