package mvcc

import "errors"

// Sentinel errors. Each message equals the text etcd sends for the same
// condition, so the gRPC layer can map them one to one onto etcd's rpctypes
// errors. Functions return them unwrapped or wrapped with %w; test with
// errors.Is.
var (
	// ErrCompacted: the revision asked for is below the compact revision, or
	// a compaction asks for a revision at or below the current compact
	// revision.
	ErrCompacted = errors.New("etcdserver: mvcc: required revision has been compacted")
	// ErrFutureRev: the revision asked for is above the current revision.
	ErrFutureRev = errors.New("etcdserver: mvcc: required revision is a future revision")
	// ErrEmptyKey: a request or compare has an empty key.
	ErrEmptyKey = errors.New("etcdserver: key is not provided")
	// ErrKeyNotFound: a txn op carries no request, or a put with ignore_value
	// or ignore_lease names a key that does not exist.
	ErrKeyNotFound = errors.New("etcdserver: key not found")
	// ErrValueProvided: a put sets ignore_value and also carries a value.
	ErrValueProvided = errors.New("etcdserver: value is provided")
	// ErrLeaseProvided: a put sets ignore_lease and also carries a lease.
	ErrLeaseProvided = errors.New("etcdserver: lease is provided")
	// ErrTooManyOps: a txn list (compares, success or failure) is longer
	// than the limit.
	ErrTooManyOps = errors.New("etcdserver: too many operations in txn request")
	// ErrDuplicateKey: a txn writes one key twice, or puts a key that it
	// also deletes.
	ErrDuplicateKey = errors.New("etcdserver: duplicate key given in txn request")
	// ErrInvalidSortOption: a range has an unknown sort order or target.
	ErrInvalidSortOption = errors.New("etcdserver: invalid sort option")
	// ErrLeaseNotFound: the lease does not exist (or the id is 0 in a grant).
	ErrLeaseNotFound = errors.New("etcdserver: requested lease not found")
	// ErrLeaseExist: a grant names a lease id that is already in use.
	ErrLeaseExist = errors.New("etcdserver: lease already exists")
	// ErrLeaseTTLTooLarge: a grant asks for a TTL above MaxLeaseTTL.
	ErrLeaseTTLTooLarge = errors.New("etcdserver: too large lease TTL")
	// ErrNilRequest: a nil request was passed to the store.
	ErrNilRequest = errors.New("mvcc: nil request")
	// ErrCorruptSnapshot: Restore was given data that is not a valid
	// snapshot (bad magic, checksum mismatch, truncated or inconsistent).
	ErrCorruptSnapshot = errors.New("mvcc: corrupt snapshot")
)
