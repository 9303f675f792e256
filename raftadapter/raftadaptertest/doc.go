// Package raftadaptertest provides test doubles for raftadapter: an
// in-memory Network that carries raft messages between nodes in one process
// (with partitions, one-way cuts, seeded random loss, random delay that
// reorders messages, and an interceptor that drops chosen messages or holds
// them back for late delivery) and KV, a small deterministic state machine
// that counts how often each key was written.
//
// The package does not import raftadapter, so both raftadapter's internal
// and external tests can use it. A *raftadapter.Node satisfies Peer, and a
// Network endpoint satisfies raftadapter.Transport.
//
// Goroutines: the Network runs one delivery goroutine per attached member,
// which owns nothing but the message it is delivering; Close stops them all.
package raftadaptertest
