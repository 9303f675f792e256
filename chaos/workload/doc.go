// Package workload drives etcd clients against a meshkv cluster during a
// chaos run and records what they saw, for the checkers in chaos/check.
//
// A [Workload] runs, until Stop:
//
//   - key-value workers: one per node endpoint (a client pinned to that node)
//     plus multi-endpoint workers (a client balancing over every node). Each
//     issues Get, Put, Delete and compare-and-set Txns on a few keys with
//     values unique to the write, and records every call with its outcome;
//     writes that fail ambiguously are recorded as indeterminate;
//   - lock workers: each holds a session (a lease) and a
//     clientv3/concurrency Mutex; inside the critical section it reads a
//     counter and writes counter+1 in a Txn guarded by its fencing token (the
//     lock key's create revision);
//   - one watcher of the whole key space from the first revision, which
//     resumes at last revision + 1 whenever its stream ends, and on demand
//     ([Workload.ReconnectWatch]) on the next endpoint.
//
// After Stop, [Workload.Collect] reads back what the checkers need (final
// values, the committed versions of the lock counter, every acknowledged
// write at its revision, the final store) and returns a [History].
//
// Goroutines: one per worker and one for the watcher, all owned by the
// Workload and stopped by Stop (idempotent), which also closes the clients.
package workload
