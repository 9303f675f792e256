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
// With [Config.MeshListen] set, nodes meet over a Weave Mesh network: they form
// one cluster once [Config.InitialClusterSize] of them see each other, later
// nodes join it as learners and are promoted up to [Config.TargetVoters], and
// the leader replaces members the mesh reports gone for
// [Config.DeadMemberTimeout] (internal/membership: never through an even
// voter count, never on a minority's word). [Node.Close] leaves the cluster
// gracefully. A node that the cluster removed, or whose raft loop failed,
// stops serving: [Node.Done] is closed and [Node.Err] says why. After a
// lost quorum, [Node.Recover] restarts a survivor as the only voter of a
// new cluster that keeps its data.
//
// The store is in memory only: back it up with etcd's snapshot (the
// Maintenance Snapshot RPC, `etcdctl snapshot save`), and found a new cluster
// from such a file, meshkv's or etcd's, with [Config.InitialSnapshot].
//
// Goroutines a Node owns: the raft loop and snapshot writer (raftadapter), the
// mesh transport's senders, receiver and prober (meshtransport), the
// membership loop (bootstrap, then the leader's membership duties), the
// services' background loop (lease expiry, watch hub, auto-compaction), one
// gRPC server serving the in-memory listener and, on every TCP client
// listener, gRPC and HTTP side by side (internal/clientmux: /metrics, the
// health endpoints, /version and etcd's JSON gateway), the HTTP server of the
// metrics listeners, the loop that keeps grpc.health.v1 in step with the
// leader, and, with a mesh, the sampler of the peers' probe round trips for
// the metrics. Close stops them all and waits for them; mesh's own router
// goroutines outlive Close until the process exits (mesh cannot stop them).
//
// Each node has its own Prometheus registry: etcd's metric names where the
// meaning matches, meshkv_* for the mesh (see internal/metrics and
// [Node.MetricsHandler]).
package meshkv
