package etcdsnap

import (
	"errors"

	"go.etcd.io/etcd/api/v3/authpb"
)

// Sentinel errors.
var (
	// ErrCorrupt: the input is not a well-formed etcd backend database (bad
	// bbolt structure, undecodable records, missing buckets). Errors
	// wrapping it say what is wrong.
	ErrCorrupt = errors.New("etcdsnap: not a valid etcd snapshot")
	// ErrHashMismatch: the file ends in a sha256 trailer that does not match
	// the database before it (a damaged or truncated copy).
	ErrHashMismatch = errors.New("etcdsnap: snapshot sha256 mismatch")
	// ErrUnsupportedVersion: the file's storage version is not an etcd v3
	// one.
	ErrUnsupportedVersion = errors.New("etcdsnap: unsupported storage version")
	// ErrSourceChanged: a Source yielded different data on the writing pass
	// than on the planning pass.
	ErrSourceChanged = errors.New("etcdsnap: source changed between passes")
	// ErrBadSource: a Source yielded data that cannot be written (versions
	// out of revision order, a revision the key bucket cannot represent).
	ErrBadSource = errors.New("etcdsnap: invalid source data")
)

// HashSize is the size of the sha256 trailer etcd appends to a snapshot.
const HashSize = 32

// KV is one stored version of a key, as the key bucket holds it. A put sets
// every field but Tombstone (zero Value and Lease are allowed); a delete's
// tombstone sets only Key, ModRevision and Tombstone.
type KV struct {
	Key            []byte
	Value          []byte
	CreateRevision int64
	ModRevision    int64
	Version        int64
	Lease          int64
	Tombstone      bool
}

// Lease is one lease of the lease bucket.
type Lease struct {
	ID  int64
	TTL int64 // seconds, as granted
	// RemainingTTL is the last checkpointed remaining TTL in seconds; 0 if
	// none.
	RemainingTTL int64
}

// Auth is the content of the auth buckets.
type Auth struct {
	Enabled bool
	// Revision is the auth store's revision (etcd counts changes to users,
	// roles and the enabled state with it); 0 is written as 1.
	Revision uint64
	Users    []*authpb.User
	Roles    []*authpb.Role
}
