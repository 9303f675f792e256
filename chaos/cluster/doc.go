// Package cluster runs a real multi-process cluster, meshkv or etcd, and
// breaks its network on demand, for meshkv's chaos runs.
//
// [Start] launches N server processes that form one cluster. The network
// between them is one of two modes ([Net]):
//
//   - [Proxy]: every member runs on loopback with free ports and peer
//     discovery off; node i reaches node j only through a TCP proxy of its
//     own, proxy(i→j) (internal/netproxy), so every mesh connection between
//     two nodes runs through one of the two proxies of that pair. No root
//     needed; the members' own sockets never see loss.
//   - [Netns]: every member runs in a network namespace of its own, with a
//     node address on its lo (mesh or peer listener), a veth pair per member
//     pair with host routes (traffic between A and B uses only the A–B
//     veth), and a client veth to the root namespace where the clients run.
//     Links are cut in the kernel (neighbour entries with a wrong MAC,
//     unreachable routes, ss -K), so the members' TCP stacks see loss,
//     retransmission backoff and half-open connections. Needs root
//     ([NetnsAvailable]).
//
// Cutting a link:
//
//   - [Reset]: connections are closed and new ones fail at once (what mesh
//     notices within about 100 ms);
//   - [Silent]: bytes are dropped in both directions while the connections
//     stay open (what mesh does not notice for 30–60 s, if ever);
//   - [Stall]: the proxy stops reading, so the senders' writes block once
//     the socket buffers are full, and held bytes arrive after the heal (in
//     netns mode a silent cut, which at the kernel level is the same);
//   - [Cluster.CutOneWay]: only the bytes from one node to the other are
//     dropped.
//
// Every cut, heal and process change is recorded as a [Topology], from which
// a run can tell which members could serve writes at any time.
//
// The [Flavor] is meshkv (members find each other over the mesh, with a
// per-cluster random mesh password) or etcd (netns mode only: a static
// --initial-cluster on the node addresses). Processes can be killed
// (SIGKILL; for meshkv a fresh node with a new name and an empty store can
// then be added with [Cluster.AddNode]), paused (SIGSTOP), resumed
// (SIGCONT), and have their CPU starved ([Cluster.Starve], see
// [StarveMethod]).
//
// Processes are children of the chaos run: they are started in their own
// process group with a parent-death signal (SIGKILL), from one goroutine
// locked to its OS thread (which also enters a member's namespace to start
// it there), so they die with the run even if it is killed.
// [Cluster.Close] ends every starvation, kills every process by PID, closes
// the proxies or deletes the namespaces (and waits for their veths to go),
// and removes the cluster's temporary files. Namespaces and cgroups are
// named after the owning process (pid and start time), so that the leftovers
// of a run that was killed are found and removed by the next netns run or by
// [RemoveStale], and nobody else's.
//
// Goroutines: one spawner goroutine (owns the OS thread the processes are
// started from), one waiter per process (reaps it, busy processes of a
// starvation included), and the proxies' own. Close stops them all.
package cluster
