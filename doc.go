// Package meshkv embeds a meshkv node in a Go program: a strongly consistent,
// in-memory key-value and lock store that speaks etcd's v3 API, replicated with
// Raft over a Weave Mesh peer network.
//
// Starting a node takes three lines; the client is a real *clientv3.Client that
// talks to the node in memory, without opening a TCP port:
//
//	node, err := meshkv.Start(ctx, meshkv.Config{})
//	if err != nil { ... }
//	defer node.Close()
//	cli := node.Client()
//	_, err = cli.Put(ctx, "greeting", "hello")
//
// Set [Config.ListenClientURLs] to also serve etcd clients (etcdctl, other
// languages) on TCP.
//
// The packages below this one do the work: kvapi serves the gRPC API over the
// MVCC store (kvapi/mvcc), raftadapter replicates it with Raft, and
// meshtransport carries Raft's messages over the mesh. This package is the only
// one that knows all of them; it wires them together.
//
// Goroutines: a Node owns the raft loop (in raftadapter), one gRPC server per
// listener plus the in-memory one, and their accept loops. Close stops them all
// and waits for them.
package meshkv
