// Package check holds the correctness checkers of meshkv's chaos runs.
//
// Every checker is a pure function over a recorded history: what the chaos
// clients asked, what they were told, and what was read back from the cluster
// after the final heal. Nothing here talks to a cluster, so each checker is
// unit-tested with hand-made histories, valid ones that must pass and
// violating ones that must fail.
//
// The checkers:
//
//   - [Linearizable]: Put/Get/Delete/compare-and-set histories against a
//     sequential key-value model, with the porcupine checker. Writes whose
//     outcome the client could not learn (timeouts, Unavailable) are
//     indeterminate: they may have happened at any point after their call.
//   - [Locks]: mutual exclusion and fencing-token order of lock holders.
//   - [Watch]: a watcher from the first revision saw every committed revision
//     exactly once, in order, and replaying its events gives the final state.
//   - [Durable]: every acknowledged write is in the store at the revision the
//     cluster acknowledged it with.
//   - [LongestGap]: the longest stretch without a successful write in a window.
//
// The package has no goroutines and no mutable package state.
package check
