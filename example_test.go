package meshkv_test

import (
	"context"
	"fmt"
	"log"

	"github.com/meshkv/meshkv"
)

// A single in-process node: an etcd client with no TCP port, and a lock.
func Example() {
	ctx := context.Background()
	node, err := meshkv.Start(ctx, meshkv.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	cli := node.Client() // a *clientv3.Client talking to the node in memory
	if _, err := cli.Put(ctx, "greeting", "hello"); err != nil {
		log.Fatal(err)
	}
	resp, err := cli.Get(ctx, "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s=%s\n", resp.Kvs[0].Key, resp.Kvs[0].Value)

	lock, err := node.Lock(ctx, "jobs/nightly")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("holding", lock.Key != "", "token > 0:", lock.Token > 0)
	if err := lock.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// greeting=hello
	// holding true token > 0: true
}
