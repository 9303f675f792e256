// Package mvcc is meshkv's state machine: an in-memory multi-version
// key-value store with the semantics of etcd v3.7 (revisions, versions,
// create and mod revisions, tombstones, compaction, range options, txn
// compares, leases attached to keys, watch event history), speaking etcd's
// own protobuf types.
//
// # Contract
//
// Single writer. Put, DeleteRange, Txn (unless TxnReadOnly), Compact,
// LeaseGrant, LeaseRevoke, LeaseCheckpoint and Restore change the state. They
// must be called from one goroutine (the raft apply loop), in log order.
//
// Determinism. The same sequence of writes applied to two stores (or to a
// store restored from a snapshot of the other at the matching point) yields
// identical state, identical responses, identical events and identical
// Hash values. Nothing depends on time, randomness or map order. A write that
// returns an error changes nothing.
//
// Concurrent readers. Range, read-only Txn, Lease, Leases, History, Hash,
// Snapshot, Rev, CompactRev and Size may be called from any goroutine while
// the writer works. A read sees the state between two writes, never part of
// one. Readers share a sync.RWMutex with the writer: a write holds it
// exclusively for its own (short) duration, a read shares it for the length
// of its scan, so a very large range delays the writer by its scan time.
// Snapshot and Hash copy the B-tree roots (copy-on-write) and then work
// without the lock; History releases the lock before each call of its fn.
//
// Export and load. A Snapshot also yields its content record by record
// (Records, in revision order, and Leases), and a Loader builds a new store
// from such records, checking that they form a history a store could have
// written. Together they move a store through other formats (etcd's
// snapshot files) without an intermediate copy.
//
// Byte slices. The store keeps the key and value slices of the requests it is
// given (no copy): the caller must not modify them afterwards. Responses,
// events and LeaseInfo share key and value bytes with the store: callers must
// not modify them either.
//
// No goroutines. The store starts none; SetObserver's function runs on the
// writer's goroutine after each new revision.
//
// # Layout
//
// A B-tree (github.com/tidwall/btree) keyed by key holds each key's latest
// version, so a range at the current revision reads nothing else. Older
// versions live in a second B-tree, only for keys that have any; a historical
// read consults it only for keys changed since the revision read. A log of
// all versions since the compact revision, in write order, drives History,
// snapshots and compaction (whose cost is proportional to the writes since
// the previous one). Versions are immutable once written, so a Snapshot is
// three copy-on-write B-tree copies and a slice header.
package mvcc
