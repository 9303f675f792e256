// Package etcdsnap writes and reads etcd v3 snapshot files: the bbolt
// database of etcd's storage backend, as `etcdctl snapshot save` stores it
// (followed by the sha256 of the database) and `etcdutl snapshot restore`
// consumes it. It knows etcd's on-disk layout and nothing of meshkv's store:
// a writer walks a Source, a reader feeds a Sink.
//
// # Layout
//
// The database has etcd's buckets (alarm, auth, authRoles, authUsers,
// cluster, key, lease, members, members_removed, meta):
//
//   - key: every stored version of every key since the compaction, keyed by
//     its revision (8-byte big-endian main revision, '_', 8-byte sub
//     revision, and a trailing 't' for a delete's tombstone); the value is
//     the mvccpb.KeyValue (a tombstone carries only the key).
//   - meta: finishedCompactRev and scheduledCompactRev (revision keys),
//     consistent_index and term (8-byte big endian), storageVersion.
//   - lease: leasepb.Lease records keyed by the 8-byte big-endian lease id.
//   - auth: authEnabled (one byte) and authRevision (8-byte big endian);
//     authUsers and authRoles: authpb.User and authpb.Role keyed by name.
//
// The writer leaves alarm, cluster, members and members_removed empty:
// etcdutl's restore writes the new cluster's members itself, and the new
// cluster settles its version. It records storage version 3.6.0, which etcd
// 3.6 and 3.7 both restore.
//
// # Writing
//
// Prepare walks the Source once to lay the file out (nothing is written and
// only a few pages per tree level are held), so the file's size is known;
// File.WriteTo then walks it again and streams the pages, bottom-up B+trees
// filled to the brim, followed by the sha256. The Source must be an
// immutable capture.
//
// # Reading
//
// Read accepts any bbolt database of etcd's layout, from etcd or from this
// package, with or without the trailer. It reads page by page through an
// io.ReaderAt and trusts nothing: bounds, page ids, page reuse, tree depth
// and key order are checked, and malformed input yields ErrCorrupt.
//
// The package starts no goroutines and holds no global state.
package etcdsnap
