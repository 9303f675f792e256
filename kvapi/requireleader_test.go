package kvapi

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaderlessCluster leads until told it lost its leader.
type leaderlessCluster struct {
	fixedCluster
	leaderless atomic.Bool
}

func (c *leaderlessCluster) RaftStatus() RaftStatus {
	if c.leaderless.Load() {
		return RaftStatus{Term: 3}
	}
	return c.fixedCluster.RaftStatus()
}

func (c *leaderlessCluster) LeaderTerm() (uint64, uint64) {
	st := c.RaftStatus()
	return st.Leader, st.Term
}

func TestRequireLeader(t *testing.T) {
	cluster := &leaderlessCluster{}
	ts := newTestServerWith(t, Config{LeaderLossTimeout: 300 * time.Millisecond}, cluster)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ts.srv.Run(ctx)

	rl := clientv3.WithRequireLeader(context.Background())
	wch := ts.cli.Watch(rl, "k")
	if _, err := ts.cli.Put(rl, "k", "1"); err != nil {
		t.Fatal(err)
	}
	if resp := <-wch; resp.Err() != nil || len(resp.Events) != 1 {
		t.Fatalf("watch with a leader: %+v", resp)
	}
	// A plain watch is not ended when the leader is lost.
	plain := ts.cli.Watch(context.Background(), "k")

	lost := time.Now()
	cluster.leaderless.Store(true)
	if _, err := ts.cli.Put(rl, "k", "2"); !errors.Is(err, rpctypes.ErrNoLeader) {
		t.Fatalf("require-leader put without a leader: %v, want %v", err, rpctypes.ErrNoLeader)
	}
	select {
	case resp, ok := <-wch:
		if ok && !errors.Is(resp.Err(), rpctypes.ErrNoLeader) {
			t.Fatalf("require-leader watch after losing the leader: %+v, want no leader", resp)
		}
		// The monitor checks three times per timeout, so it acts after two
		// to three checks without a leader: not at once.
		if d := time.Since(lost); d < 200*time.Millisecond {
			t.Fatalf("watch ended %v after the loss, well before the leader-loss timeout", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("require-leader watch still open 5s after the member lost its leader")
	}
	cluster.leaderless.Store(false)
	if _, err := ts.cli.Put(context.Background(), "k", "3"); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-plain:
		if resp.Err() != nil || len(resp.Events) == 0 || string(resp.Events[len(resp.Events)-1].Kv.Value) != "3" {
			t.Fatalf("plain watch = %+v, want the put of 3", resp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("plain watch lost")
	}
}
