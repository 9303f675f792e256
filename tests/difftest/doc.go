// Package difftest runs the same requests against a real etcd v3.7.3 server
// (embedded, in a temporary directory on loopback ports) and a meshkv node,
// and fails on the first response or error that differs.
//
// Two kinds of tests drive it: seeded random sequences of thousands of KV,
// lease and compaction requests over a small key space (so that collisions,
// ranges, deletes and re-creates happen all the time), and scripted scenarios
// aimed at the corners where etcd's behaviour is easy to get wrong. Every
// response is compared after zeroing the header fields that name the server
// (cluster_id, member_id, raft_term); errors are compared by gRPC code and
// message. A failure prints the op index, the request, both answers, and the
// ops leading up to it.
//
// Flags (go test ./difftest -args ...): -seed N runs only that seed; -ops N
// sets the length of each random sequence; -self runs etcd against a second
// etcd, to check the harness itself.
//
// The package has only tests; this file exists for its documentation.
package difftest
