package etcdsnap

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/authpb"
	"google.golang.org/protobuf/proto"
)

// Sink receives the content of a snapshot file from Read.
type Sink interface {
	// Lease is called for every lease, in the order of the lease bucket.
	Lease(l Lease) error
	// KV is called for every stored version in ascending revision order
	// (main, then sub revision). kv and its slices are valid only during the
	// call.
	KV(kv *KV) error
}

// ReadOptions tunes Read. The zero value verifies everything.
type ReadOptions struct {
	// SkipHashCheck accepts a sha256 trailer that does not match, as
	// etcdutl's --skip-hash-check.
	SkipHashCheck bool
}

// Info is what Read learned besides the keys and leases.
type Info struct {
	// Revision is the store's current revision, derived as etcd does: the
	// highest revision of the key bucket or the compact revision, whichever
	// is higher (at least 1).
	Revision int64
	// CompactRevision is the compaction to apply: the scheduled compaction
	// if one was left unfinished, else the finished one; -1 if none.
	CompactRevision int64
	// ConsistentIndex and Term are the raft position recorded in the file
	// (0 if absent).
	ConsistentIndex uint64
	Term            uint64
	// StorageVersion is the file's storage version ("" for files written
	// before etcd 3.6).
	StorageVersion string
	// HasHash reports whether the file ended in a sha256 trailer (checked
	// unless ReadOptions.SkipHashCheck).
	HasHash bool
	// Auth is the auth state; nil if the file has no auth bucket.
	Auth *Auth
	// KVs and Leases count what was handed to the Sink.
	KVs, Leases int
}

// Read parses the etcd snapshot of size bytes in r (a database as etcdctl
// snapshot save stores it, with its sha256 trailer, or a member's db file
// without one) and hands its leases and key versions to sink. Malformed
// input gives an error wrapping ErrCorrupt, never a panic; memory use is a
// few pages beyond what sink keeps. Errors from sink are returned as they
// are.
func Read(r io.ReaderAt, size int64, sink Sink, opts ReadOptions) (*Info, error) {
	info := &Info{CompactRevision: -1}
	dbSize := size
	// bbolt files are whole pages; etcd's trailer makes the size 32 bytes
	// past a multiple of 512, as etcd detects it.
	if size%512 == HashSize {
		info.HasHash = true
		dbSize = size - HashSize
		if !opts.SkipHashCheck {
			if err := checkHash(r, dbSize); err != nil {
				return nil, err
			}
		}
	}
	br, err := openBolt(r, dbSize)
	if err != nil {
		return nil, err
	}
	bs, err := br.buckets(map[string]bool{
		string(bucketKey): true, string(bucketMeta): true, string(bucketLease): true,
		string(bucketAuth): true, string(bucketAuthUsers): true, string(bucketAuthRoles): true,
	})
	if err != nil {
		return nil, err
	}
	for _, name := range [][]byte{bucketKey, bucketMeta} {
		if _, ok := bs[string(name)]; !ok {
			return nil, corruptf("no %q bucket: not an etcd v3 backend", name)
		}
	}
	finished, scheduled, err := readMetaBucket(br, bs[string(bucketMeta)], info)
	if err != nil {
		return nil, err
	}
	if ref, ok := bs[string(bucketLease)]; ok {
		if err := readLeases(br, ref, sink, info); err != nil {
			return nil, err
		}
	}
	maxRev, err := readKeys(br, bs[string(bucketKey)], sink, info)
	if err != nil {
		return nil, err
	}
	info.Revision = max(maxRev, finished, scheduled, 1)
	info.CompactRevision = max(finished, scheduled)
	if info.Auth, err = readAuth(br, bs); err != nil {
		return nil, err
	}
	return info, nil
}

// checkHash verifies the sha256 trailer after dbSize bytes.
func checkHash(r io.ReaderAt, dbSize int64) error {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, dbSize)); err != nil {
		return fmt.Errorf("etcdsnap: read: %w", err)
	}
	var want [HashSize]byte
	if err := readFull(r, want[:], dbSize); err != nil {
		return err
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		return ErrHashMismatch
	}
	return nil
}

// readMetaBucket reads the meta bucket into info and returns the finished and
// scheduled compact revisions (-1 if absent).
func readMetaBucket(br *boltReader, ref bucketRef, info *Info) (finished, scheduled int64, err error) {
	finished, scheduled = -1, -1
	err = br.each(ref, func(flags uint32, k, v []byte) error {
		if flags&bucketLeafFlag != 0 {
			return corruptf("meta bucket: nested bucket %q", k)
		}
		switch {
		case bytes.Equal(k, metaConsistentIndex), bytes.Equal(k, metaTerm):
			if len(v) != 8 {
				return corruptf("meta %s: %d bytes", k, len(v))
			}
			if bytes.Equal(k, metaTerm) {
				info.Term = binary.BigEndian.Uint64(v)
			} else {
				info.ConsistentIndex = binary.BigEndian.Uint64(v)
			}
		case bytes.Equal(k, metaFinishedCompact), bytes.Equal(k, metaScheduledCompact):
			main, _, _, ok := parseRevKey(v)
			if !ok || len(v) != revKeyLen {
				return corruptf("meta %s: bad revision", k)
			}
			if bytes.Equal(k, metaFinishedCompact) {
				finished = main
			} else {
				scheduled = main
			}
		case bytes.Equal(k, metaStorageVersion):
			if err := checkStorageVersion(v); err != nil {
				return err
			}
			info.StorageVersion = string(v)
		}
		return nil
	})
	return finished, scheduled, err
}

// checkStorageVersion accepts "" (written transiently by etcd's 3.6
// migration) and any version 3.x.y.
func checkStorageVersion(v []byte) error {
	if len(v) == 0 {
		return nil
	}
	parts := strings.SplitN(string(v), ".", 3)
	if len(parts) != 3 {
		return corruptf("storage version %q", v)
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 32); err != nil {
			return corruptf("storage version %q", v)
		}
	}
	if parts[0] != "3" {
		return fmt.Errorf("%w: %q", ErrUnsupportedVersion, v)
	}
	return nil
}

func readLeases(br *boltReader, ref bucketRef, sink Sink, info *Info) error {
	return br.each(ref, func(flags uint32, k, v []byte) error {
		if flags&bucketLeafFlag != 0 || len(k) != 8 {
			return corruptf("lease bucket: bad key %x", k)
		}
		l, ok := parseLease(v)
		if !ok || l.ID != int64(binary.BigEndian.Uint64(k)) {
			return corruptf("lease %x: bad record", k)
		}
		info.Leases++
		return sink.Lease(l)
	})
}

// readKeys hands the key bucket to sink and returns its highest revision.
func readKeys(br *boltReader, ref bucketRef, sink Sink, info *Info) (int64, error) {
	var last, lastSub int64
	var kv KV
	err := br.each(ref, func(flags uint32, k, v []byte) error {
		main, sub, tomb, ok := parseRevKey(k)
		if flags&bucketLeafFlag != 0 || !ok || main < 1 {
			return corruptf("key bucket: bad revision key %x", k)
		}
		if main == last && sub <= lastSub {
			return corruptf("key bucket: revision %d_%d stored twice", main, sub)
		}
		last, lastSub = main, sub
		if !parseKV(v, &kv) {
			return corruptf("revision %d_%d: undecodable key-value", main, sub)
		}
		if len(kv.Key) == 0 {
			// A bare revision mark (etcdutl restore --bump-revision
			// writes one): it raises the revision and holds no key.
			return nil
		}
		if tomb {
			kv = KV{Key: kv.Key, ModRevision: main, Tombstone: true}
		} else if kv.ModRevision != main {
			return corruptf("revision %d_%d holds a key-value of revision %d", main, sub, kv.ModRevision)
		}
		info.KVs++
		return sink.KV(&kv)
	})
	return last, err
}

// readAuth reads the auth buckets, if the file has them.
func readAuth(br *boltReader, bs map[string]bucketRef) (*Auth, error) {
	ref, ok := bs[string(bucketAuth)]
	if !ok {
		return nil, nil
	}
	a := &Auth{}
	err := br.each(ref, func(flags uint32, k, v []byte) error {
		switch {
		case flags&bucketLeafFlag != 0:
			return corruptf("auth bucket: nested bucket %q", k)
		case bytes.Equal(k, authEnabledKey):
			a.Enabled = len(v) == 1 && v[0] == 1
		case bytes.Equal(k, authRevisionKey):
			if len(v) != 8 {
				return corruptf("auth revision: %d bytes", len(v))
			}
			a.Revision = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if ref, ok := bs[string(bucketAuthUsers)]; ok {
		a.Users, err = readNamed(br, ref, func() *authpb.User { return &authpb.User{} }, "user")
		if err != nil {
			return nil, err
		}
	}
	if ref, ok := bs[string(bucketAuthRoles)]; ok {
		a.Roles, err = readNamed(br, ref, func() *authpb.Role { return &authpb.Role{} }, "role")
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

// named is authpb.User or authpb.Role.
type named interface {
	proto.Message
	GetName() []byte
}

// readNamed decodes the users or roles of a bucket keyed by name.
func readNamed[M named](br *boltReader, ref bucketRef, newM func() M, what string) ([]M, error) {
	var out []M
	err := br.each(ref, func(flags uint32, k, v []byte) error {
		m := newM()
		if flags&bucketLeafFlag != 0 || proto.Unmarshal(v, m) != nil {
			return corruptf("%s %q: undecodable", what, k)
		}
		if !bytes.Equal(m.GetName(), k) {
			return corruptf("%s %q is stored under %q", what, m.GetName(), k)
		}
		out = append(out, m)
		return nil
	})
	return out, err
}
