package raftadapter_test

import (
	"context"
	"fmt"
	"time"

	"github.com/meshkv/meshkv/raftadapter"
	"github.com/meshkv/meshkv/raftadapter/raftadaptertest"
)

func Example() {
	net := raftadaptertest.NewNetwork(raftadaptertest.NetworkConfig{})
	defer net.Close()
	kv := raftadaptertest.NewKV()
	n, err := raftadapter.New(raftadapter.Config{
		ID:           1,
		Peers:        []uint64{1},
		TickInterval: 10 * time.Millisecond,
	}, kv, net.Transport(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()
	net.Attach(1, n) // the transport delivers incoming messages with n.Step

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Wait for a leader: take the Changes channel, then look at Status.
	for {
		ch := n.Changes()
		if n.Status().Leader != 0 {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			fmt.Println("no leader")
			return
		}
	}

	res, err := n.Propose(ctx, raftadaptertest.Put("greeting", "hello"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("applied at index > 0: %v\n", res.(raftadaptertest.PutResult).Index > 0)

	if err := n.ReadIndex(ctx); err != nil { // linearizable read barrier
		fmt.Println(err)
		return
	}
	v, _ := kv.Get("greeting")
	fmt.Println("greeting =", v)
	// Output:
	// applied at index > 0: true
	// greeting = hello
}
