// Package backup converts between meshkv's store and etcd v3 snapshot files:
// it writes a store capture in etcd's backend layout (through
// internal/etcdsnap), and builds a new store from such a file, whether
// meshkv or etcd wrote it (LoadInitial: the store and auth state a node
// founds its cluster from).
//
// Writing streams from the capture: the file is never held in memory. A
// store capture is immutable, so the two passes etcdsnap makes over it see
// the same data. Loading checks the file's structure (etcdsnap) and the
// history it holds (mvcc.Loader) before a store exists; nothing it reads can
// crash the process.
//
// The package starts no goroutines.
package backup

import (
	"fmt"
	"io"
	"os"

	"github.com/meshkv/meshkv/internal/etcdsnap"
	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// Prepare lays out the etcd snapshot file of sn. opts carries the auth
// state and the raft position, which the store does not know.
func Prepare(sn *mvcc.Snapshot, opts etcdsnap.WriteOptions) (*etcdsnap.File, error) {
	return etcdsnap.Prepare(source{sn}, opts)
}

// source presents a store capture as an etcdsnap.Source.
type source struct{ sn *mvcc.Snapshot }

var _ etcdsnap.Source = source{}

func (s source) Revision() int64        { return s.sn.Rev() }
func (s source) CompactRevision() int64 { return s.sn.CompactRev() }

func (s source) KVs(fn func(*etcdsnap.KV) error) error {
	var kv etcdsnap.KV
	return s.sn.Records(func(r *mvcc.Record) error {
		kv = etcdsnap.KV{
			Key: r.Key, Value: r.Value, CreateRevision: r.CreateRev, ModRevision: r.ModRev,
			Version: r.Version, Lease: r.Lease, Tombstone: r.Tombstone(),
		}
		return fn(&kv)
	})
}

func (s source) Leases(fn func(etcdsnap.Lease) error) error {
	return s.sn.Leases(func(l mvcc.LeaseInfo) error {
		return fn(etcdsnap.Lease{ID: l.ID, TTL: l.TTL, RemainingTTL: l.RemainingTTL})
	})
}

// sink feeds what etcdsnap.Read finds to an mvcc.Loader.
type sink struct {
	l   *mvcc.Loader
	rec mvcc.Record
}

var _ etcdsnap.Sink = (*sink)(nil)

func (s *sink) Lease(l etcdsnap.Lease) error { return s.l.Lease(l.ID, l.TTL, l.RemainingTTL) }

func (s *sink) KV(kv *etcdsnap.KV) error {
	s.rec = mvcc.Record{Key: kv.Key, ModRev: kv.ModRevision}
	if !kv.Tombstone {
		s.rec.Value, s.rec.CreateRev, s.rec.Version, s.rec.Lease = kv.Value, kv.CreateRevision, kv.Version, kv.Lease
		if kv.Version == 0 {
			// Version 0 would read as a tombstone; etcd never writes a put
			// without a version.
			return fmt.Errorf("%w: key %q: put at revision %d without a version", mvcc.ErrCorruptSnapshot, kv.Key, kv.ModRevision)
		}
	}
	return s.l.Add(&s.rec)
}

// Load builds a new store from the etcd snapshot of size bytes in r: every
// version since the compaction with its revisions, the current and compact
// revisions (an unfinished compaction is completed), and the leases with
// their TTLs and keys. The auth state and the file's metadata come back in
// the Info. Errors wrap etcdsnap.ErrCorrupt (bad structure),
// etcdsnap.ErrHashMismatch, etcdsnap.ErrUnsupportedVersion or
// mvcc.ErrCorruptSnapshot (an inconsistent history).
func Load(r io.ReaderAt, size int64, opts etcdsnap.ReadOptions) (*mvcc.Store, *etcdsnap.Info, error) {
	s := &sink{l: mvcc.NewLoader()}
	info, err := etcdsnap.Read(r, size, s, opts)
	if err != nil {
		return nil, nil, err
	}
	st, err := s.l.Store(info.Revision, info.CompactRevision)
	if err != nil {
		return nil, nil, err
	}
	return st, info, nil
}

// LoadFile is Load on the named file.
func LoadFile(path string, opts etcdsnap.ReadOptions) (*mvcc.Store, *etcdsnap.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("backup: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("backup: %s is not a regular file", path)
	}
	st, info, err := Load(f, fi.Size(), opts)
	if err != nil {
		return nil, nil, fmt.Errorf("backup: %s: %w", path, err)
	}
	return st, info, nil
}
