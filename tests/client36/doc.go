// Package client36 checks that clients built with etcd's clientv3 3.6 keep
// working against meshkv, which is built with etcd's 3.7 API packages: KV,
// watch, leases, the concurrency package's mutex and election, and the
// cluster and maintenance calls clients use, over TCP.
//
// It is a module of its own so that its build list holds
// go.etcd.io/etcd/client/v3 v3.6.6: it does not import meshkv (whose
// requirements would lift the client to 3.7), but builds the meshkv binary
// from the repository root with meshkv's own go.mod and talks to the
// process. It has only tests.
package client36
