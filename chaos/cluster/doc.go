// Package cluster runs a real multi-process meshkv cluster on loopback and
// breaks its network on demand, for meshkv's chaos runs.
//
// [Start] launches N meshkv processes with free ports and peer discovery off.
// Node i reaches node j only through a TCP proxy of its own, proxy(i→j)
// (internal/netproxy): node i is started with --peers listing its proxies, so
// every mesh connection between two nodes runs through one of the two proxies
// of that pair. Cutting a link means cutting both proxies of the pair:
//
//   - [Reset]: connections are closed with RST and new ones are refused
//     the same way (what mesh notices within about 100 ms);
//   - [Silent]: bytes are dropped in both directions while the connections
//     stay open (what mesh does not notice for 30–60 s, if ever);
//   - [Stall]: the proxy stops reading, so the senders' writes block once
//     the socket buffers are full, and held bytes arrive after the heal;
//   - [Cluster.CutOneWay]: only the bytes from one node to the other are
//     dropped, on whichever of the two proxies carries the connection.
//
// Processes can also be killed (SIGKILL; a fresh node with a new name and an
// empty store can then be added with [Cluster.AddNode]), paused (SIGSTOP)
// and resumed (SIGCONT).
//
// Processes are children of the chaos run: they are started in their own
// process group with a parent-death signal (SIGKILL), from one goroutine
// locked to its OS thread, so they die with the run even if it is killed.
// [Cluster.Close] kills every process by PID, closes the proxies and removes
// the cluster's directory unless the caller provided it.
//
// Goroutines: one spawner goroutine (owns the OS thread the processes are
// started from), one waiter per process (reaps it), and the proxies' own.
// Close stops them all.
package cluster
