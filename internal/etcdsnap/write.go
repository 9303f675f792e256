package etcdsnap

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"slices"

	"go.etcd.io/etcd/api/v3/authpb"
	"google.golang.org/protobuf/proto"
)

// Source is the state a snapshot file is written from. Prepare and WriteTo
// each walk it once, so it must be immutable (a consistent capture) and
// yield the same data every time.
type Source interface {
	// Revision is the current revision. It must be one the key bucket can
	// express: the highest ModRevision yielded, or the compact revision, or
	// 1 for an empty history.
	Revision() int64
	// CompactRevision is the revision of the last compaction, negative if
	// there was none.
	CompactRevision() int64
	// KVs calls fn for every stored version in ascending ModRevision order,
	// the versions of one revision in the order they were written. The KV
	// and its slices may be reused once fn returns. An error from fn must be
	// returned.
	KVs(fn func(*KV) error) error
	// Leases calls fn for every lease in ascending ID order. An error from
	// fn must be returned.
	Leases(fn func(Lease) error) error
}

// WriteOptions carries what a Source does not.
type WriteOptions struct {
	// ConsistentIndex and Term are recorded in the meta bucket as the raft
	// index and term the state corresponds to; 0 leaves them out. etcd's
	// restore replaces both.
	ConsistentIndex uint64
	Term            uint64
	// Auth is the auth state to write; nil writes auth disabled, with no
	// users and roles.
	Auth *Auth
}

// File is a snapshot file ready to be written: Prepare has laid it out, so
// its size is known before the first byte is sent.
type File struct {
	buckets []bucketSpec
	plan    boltPlan
}

// Prepare lays out the snapshot file of src: one pass over src that writes
// nothing and allocates a few pages per tree level.
func Prepare(src Source, opts WriteOptions) (*File, error) {
	return prepare(src, opts, writePageSize)
}

// prepare is Prepare with a page size (tests write small pages).
func prepare(src Source, opts WriteOptions, pageSize int) (*File, error) {
	f := &File{}
	auth, err := encodeAuth(opts.Auth)
	if err != nil {
		return nil, err
	}
	var maxMod int64
	f.buckets = []bucketSpec{
		{name: bucketAlarm, each: none},
		{name: bucketAuth, each: entries(auth.meta)},
		{name: bucketAuthRoles, each: entries(auth.roles)},
		{name: bucketAuthUsers, each: entries(auth.users)},
		{name: bucketCluster, each: none},
		{name: bucketKey, each: func(yield func(k, v []byte) error) error {
			m, err := eachKV(src, yield)
			maxMod = m
			return err
		}},
		{name: bucketLease, each: func(yield func(k, v []byte) error) error { return eachLease(src, yield) }},
		{name: bucketMembers, each: none},
		{name: bucketMembersRemoved, each: none},
		{name: bucketMeta, each: entries(metaEntries(src, opts))},
	}
	slices.SortFunc(f.buckets, func(a, b bucketSpec) int { return bytes.Compare(a.name, b.name) })
	if f.plan, err = planBolt(f.buckets, pageSize); err != nil {
		return nil, err
	}
	if rev := src.Revision(); rev != max(maxMod, src.CompactRevision(), 1) {
		return nil, fmt.Errorf("%w: revision %d is neither the last write's (%d) nor the compact revision (%d)",
			ErrBadSource, rev, maxMod, src.CompactRevision())
	}
	return f, nil
}

// DBSize is the size of the database part of the file.
func (f *File) DBSize() int64 { return f.plan.size() }

// Size is the size of the whole file: the database and its sha256.
func (f *File) Size() int64 { return f.DBSize() + HashSize }

// WriteTo writes the file: the bbolt database, then the sha256 of those
// bytes, as etcd's snapshot save stores it. If the Source yields other data
// than it did to Prepare, it fails with ErrSourceChanged (after writing).
// It may be called again, but not concurrently.
func (f *File) WriteTo(w io.Writer) (int64, error) {
	hw := &hashWriter{w: w, h: sha256.New()}
	bw := bufio.NewWriterSize(hw, 64<<10)
	if err := writeBolt(bw, f.plan, f.buckets); err != nil {
		return hw.n, err
	}
	if err := bw.Flush(); err != nil {
		return hw.n, err
	}
	if hw.n != f.DBSize() {
		return hw.n, ErrSourceChanged
	}
	n, err := w.Write(hw.h.Sum(nil))
	return hw.n + int64(n), err
}

// hashWriter passes writes on and hashes and counts what was written.
type hashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (hw *hashWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	return n, err
}

func none(func(k, v []byte) error) error { return nil }

type kvPair struct{ k, v []byte }

// entries yields fixed, sorted pairs.
func entries(kvs []kvPair) func(yield func(k, v []byte) error) error {
	return func(yield func(k, v []byte) error) error {
		for _, e := range kvs {
			if err := yield(e.k, e.v); err != nil {
				return err
			}
		}
		return nil
	}
}

// eachKV yields the key bucket: each version under its revision key, sub
// revisions numbered in write order within a main revision. It returns the
// highest revision seen.
func eachKV(src Source, yield func(k, v []byte) error) (int64, error) {
	var key, val []byte
	var last, sub int64
	err := src.KVs(func(kv *KV) error {
		switch {
		case kv.ModRevision < 1 || kv.ModRevision < last:
			return fmt.Errorf("%w: revision %d after %d", ErrBadSource, kv.ModRevision, last)
		case len(kv.Key) == 0:
			return fmt.Errorf("%w: empty key at revision %d", ErrBadSource, kv.ModRevision)
		case kv.ModRevision == last:
			sub++
		default:
			last, sub = kv.ModRevision, 0
		}
		key = appendRevKey(key[:0], kv.ModRevision, sub, kv.Tombstone)
		val = appendKV(val[:0], kv)
		return yield(key, val)
	})
	return last, err
}

// eachLease yields the lease bucket, in the order of its big-endian keys:
// non-negative ids first.
func eachLease(src Source, yield func(k, v []byte) error) error {
	var val []byte
	for _, negative := range []bool{false, true} {
		err := src.Leases(func(l Lease) error {
			if (l.ID < 0) != negative {
				return nil
			}
			if l.ID == 0 {
				return fmt.Errorf("%w: lease id 0", ErrBadSource)
			}
			val = appendLease(val[:0], l)
			return yield(leaseKey(l.ID), val)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// metaEntries is the meta bucket, sorted by key.
func metaEntries(src Source, opts WriteOptions) []kvPair {
	var kvs []kvPair
	if opts.ConsistentIndex != 0 {
		kvs = append(kvs, kvPair{metaConsistentIndex, be64(opts.ConsistentIndex)})
	}
	if c := src.CompactRevision(); c >= 0 {
		// A finished compaction: both marks agree, as etcd leaves them.
		k := appendRevKey(nil, c, 0, false)
		kvs = append(kvs, kvPair{metaFinishedCompact, k}, kvPair{metaScheduledCompact, k})
	}
	kvs = append(kvs, kvPair{metaStorageVersion, []byte(StorageVersion)})
	if opts.Term != 0 {
		kvs = append(kvs, kvPair{metaTerm, be64(opts.Term)})
	}
	return kvs
}

// encodedAuth is the content of the three auth buckets.
type encodedAuth struct {
	meta, users, roles []kvPair
}

func encodeAuth(a *Auth) (encodedAuth, error) {
	var e encodedAuth
	enabled, rev := byte(0), uint64(1)
	if a != nil {
		if a.Enabled {
			enabled = 1
		}
		rev = max(a.Revision, 1)
	}
	e.meta = []kvPair{{authEnabledKey, []byte{enabled}}, {authRevisionKey, be64(rev)}}
	if a == nil {
		return e, nil
	}
	var err error
	if e.users, err = encodeNamed(a.Users, (*authpb.User).GetName, "user"); err != nil {
		return e, err
	}
	if e.roles, err = encodeNamed(a.Roles, (*authpb.Role).GetName, "role"); err != nil {
		return e, err
	}
	return e, nil
}

// encodeNamed marshals users or roles, keyed and sorted by name.
func encodeNamed[M proto.Message](ms []M, name func(M) []byte, what string) ([]kvPair, error) {
	kvs := make([]kvPair, 0, len(ms))
	for _, m := range ms {
		n := name(m)
		if len(n) == 0 {
			return nil, fmt.Errorf("%w: %s without a name", ErrBadSource, what)
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("etcdsnap: marshal %s %q: %w", what, n, err)
		}
		kvs = append(kvs, kvPair{n, b})
	}
	slices.SortFunc(kvs, func(a, b kvPair) int { return bytes.Compare(a.k, b.k) })
	for i := 1; i < len(kvs); i++ {
		if bytes.Equal(kvs[i-1].k, kvs[i].k) {
			return nil, fmt.Errorf("%w: duplicate %s %q", ErrBadSource, what, kvs[i].k)
		}
	}
	return kvs, nil
}
