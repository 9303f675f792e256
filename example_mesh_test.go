//go:build !race

// This example runs real mesh routers, which have data races of their own
// (inside github.com/weaveworks/mesh), so it is left out of -race runs.

package meshkv_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"sync"
	"time"

	"github.com/meshkv/meshkv"
)

// Three nodes in one process, meeting over the mesh on loopback: they wait
// until all three see each other, form one cluster, and any member serves
// reads and writes.
func Example_threeNodes() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addrs := []string{freeAddr(), freeAddr(), freeAddr()}
	nodes := make([]*meshkv.Node, 3)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			n, err := meshkv.Start(ctx, meshkv.Config{
				Name:               fmt.Sprintf("node%d", i),
				MeshListen:         addrs[i],
				Peers:              addrs,
				InitialClusterSize: 3,
			})
			if err != nil {
				log.Fatal(err)
			}
			nodes[i] = n
		})
	}
	wg.Wait()
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()

	if _, err := nodes[0].Client().Put(ctx, "where", "everywhere"); err != nil {
		log.Fatal(err)
	}
	resp, err := nodes[2].Client().Get(ctx, "where") // linearizable: sees the put
	if err != nil {
		log.Fatal(err)
	}
	members, err := nodes[1].Client().MemberList(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, %d members, one cluster: %v\n", resp.Kvs[0].Value, len(members.Members),
		nodes[0].ClusterID() == nodes[1].ClusterID() && nodes[1].ClusterID() == nodes[2].ClusterID())
	// Output: everywhere, 3 members, one cluster: true
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
