package raftadapter_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/raftadapter"
	"github.com/meshkv/meshkv/raftadapter/raftadaptertest"
)

// gateTransport blocks Send until released: a transport that breaks the
// never-block contract, used here to hold the raft loop still.
type gateTransport struct {
	entered chan struct{}
	release chan struct{}
}

func (g *gateTransport) Send([]*raftpb.Message) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.release
}

func TestInboundQueueIsBounded(t *testing.T) {
	g := &gateTransport{entered: make(chan struct{}, 1), release: make(chan struct{})}
	n, err := raftadapter.New(raftadapter.Config{
		ID: 1, Peers: []uint64{1, 2}, DisableTicker: true, MaxInboundMsgs: 4, Logger: testLogger(t, 1),
	}, raftadaptertest.NewKV(), g)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(g.release)
		n.Close()
	})
	// Tick until the node campaigns and its loop blocks in Send.
	go func() {
		for range 30 {
			if n.Tick() != nil {
				return
			}
		}
	}()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("node never sent")
	}
	for range 10 {
		n.Step(&raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), To: new(uint64(1)), From: new(uint64(2)), Term: new(uint64(1))})
	}
	if got := n.Status().Metrics.InboundDropped; got != 6 {
		t.Fatalf("InboundDropped = %d, want 6 (queue of 4, 10 messages)", got)
	}
}

type panicky struct{ *raftadaptertest.KV }

func (p panicky) Apply(index uint64, data []byte) any {
	if string(data) == "boom" {
		panic("state machine exploded")
	}
	return p.KV.Apply(index, data)
}

func (p panicky) Snapshot() (io.WriterTo, error) { return p.KV.Snapshot() }

func TestStateMachinePanicStopsNode(t *testing.T) {
	net := raftadaptertest.NewNetwork(raftadaptertest.NetworkConfig{})
	defer net.Close()
	n, err := raftadapter.New(raftadapter.Config{ID: 1, Peers: []uint64{1}, DisableTicker: true, Logger: testLogger(t, 1)},
		panicky{raftadaptertest.NewKV()}, net.Transport(1))
	if err != nil {
		t.Fatal(err)
	}
	for !n.Status().IsLeader {
		if err := n.Tick(); err != nil {
			t.Fatal(err)
		}
	}
	_, err = n.Propose(context.Background(), []byte("boom"))
	if !errors.Is(err, raftadapter.ErrStopped) {
		t.Fatalf("Propose(boom): err = %v, want ErrStopped", err)
	}
	select {
	case <-n.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("node did not stop")
	}
	if _, err := n.Propose(context.Background(), []byte("a=1")); !errors.Is(err, raftadapter.ErrStopped) {
		t.Fatalf("Propose after failure: err = %v, want ErrStopped", err)
	}
	if err := n.Err(); err == nil {
		t.Fatal("Err after failure returned nil, want the failure")
	}
	if err := n.Close(); err == nil {
		t.Fatal("Close after failure returned nil, want the failure")
	}
	if !n.Status().Stopped {
		t.Fatal("Status not stopped")
	}
}

func TestChangesWakeOnLeaderAndMembership(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	n := c.nodes[2]
	ch := n.Changes()
	if n.Status().Leader != 0 {
		t.Fatal("leader before any tick")
	}
	lead := c.waitLeader()
	select {
	case <-ch:
	default:
		t.Fatal("Changes not closed after a leader was elected")
	}
	ch = n.Changes()
	select {
	case <-ch:
		t.Fatal("fresh Changes channel already closed")
	default:
	}
	c.start(4, nil)
	if err := c.await("add learner", 30, async(func() error {
		return c.nodes[lead].AddLearner(context.Background(), 4, nil)
	})); err != nil {
		t.Fatal(err)
	}
	c.waitFor("follower applied the change", 5, func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	})
}
