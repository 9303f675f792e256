package mvcc

import (
	"bytes"
	"fmt"

	"github.com/tidwall/btree"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Loader builds a store from an exported history: the records of
// Snapshot.Records, or the versions of an etcd key bucket, in ascending
// revision order, and the leases, in any order. It checks that the history
// is one a store could have written (each key's versions continue one
// another) and that every live key's lease exists, so that the store it
// builds keeps every invariant. A Loader is used by one goroutine.
type Loader struct {
	st   *state
	size int64
	last int64 // the last record's revision
	// continued is the highest revision of a key's first record that
	// continues a history not in the input (a version above 1, or a
	// tombstone): such records are only allowed at or below the compact
	// revision.
	continued    int64
	continuedKey []byte
	probe        ver
}

// NewLoader returns a Loader with nothing loaded.
func NewLoader() *Loader { return &Loader{st: newState()} }

// Lease adds a lease. Errors (wrapping ErrCorruptSnapshot): id 0, a
// duplicate id, a negative TTL or remaining TTL, a TTL above MaxLeaseTTL.
func (l *Loader) Lease(id, ttl, remaining int64) error {
	switch {
	case id == 0:
		return corrupt("lease id 0")
	case ttl < 0 || ttl > MaxLeaseTTL || remaining < 0 || remaining > MaxLeaseTTL:
		return corrupt("lease %x: TTL %d, remaining %d", id, ttl, remaining)
	}
	if _, ok := l.st.leases.Get(leaseRec{id: id}); ok {
		return corrupt("lease %x twice", id)
	}
	l.st.leases.Set(leaseRec{id: id, ttl: ttl, remaining: remaining})
	l.size += leaseOverhead
	return nil
}

// Add adds the next version. Its key and value are copied (versions of one
// key share one copy of the key). Records must come in ascending revision
// order, and the versions of one key must continue each other: a put after
// a put keeps the create revision and counts the version up, a tombstone
// follows a put, a put after a tombstone starts a new generation (version
// 1, created at its own revision). Errors wrap ErrCorruptSnapshot.
func (l *Loader) Add(r *Record) error {
	if len(r.Key) == 0 {
		return corrupt("empty key at revision %d", r.ModRev)
	}
	if r.ModRev < 1 || r.ModRev < l.last {
		return corrupt("revision %d after %d", r.ModRev, l.last)
	}
	tomb := r.Tombstone()
	switch {
	case tomb && (len(r.Value) > 0 || r.CreateRev != 0 || r.Lease != 0):
		return corrupt("key %q: tombstone at revision %d carries data", r.Key, r.ModRev)
	case !tomb && (r.Version < 1 || r.CreateRev < 1 || r.CreateRev > r.ModRev || (r.Version == 1) != (r.CreateRev == r.ModRev)):
		return corrupt("key %q: version %d created at %d, written at %d", r.Key, r.Version, r.CreateRev, r.ModRev)
	}
	l.probe.key = r.Key
	var hint btree.PathHint
	h, ok := l.st.heads.GetHint(&l.probe, &hint)
	l.probe.key = nil
	v := &ver{mod: r.ModRev, ver: r.Version}
	if !tomb {
		v.create, v.lease = r.CreateRev, r.Lease
		if len(r.Value) > 0 {
			v.value = bytes.Clone(r.Value)
		}
	}
	if ok {
		if err := follows(h, v, r.Key); err != nil {
			return err
		}
		v.key = h.key
		var hh btree.PathHint
		hs, _ := l.st.hists.GetHint(hist{key: h.key}, &hh)
		hs.key = h.key
		hs.vers = append(hs.vers, h)
		l.st.hists.SetHint(hs, &hh)
	} else {
		v.key = bytes.Clone(r.Key)
		if (tomb || v.ver > 1) && v.mod > l.continued {
			l.continued, l.continuedKey = v.mod, v.key
		}
	}
	l.st.heads.SetHint(v, &hint)
	l.st.log = append(l.st.log, v)
	l.size += verSize(v)
	l.last = r.ModRev
	return nil
}

// follows checks that v may follow h, the key's previous version.
func follows(h, v *ver, key []byte) error {
	switch {
	case h.tomb() && v.tomb():
		return corrupt("key %q deleted twice (revisions %d and %d)", key, h.mod, v.mod)
	case h.tomb():
		if v.ver != 1 || v.mod <= h.mod {
			return corrupt("key %q: version %d at %d after its delete at %d", key, v.ver, v.mod, h.mod)
		}
	case v.tomb():
		// A put and a delete of one key may share a revision (nested txns).
	default:
		if v.create != h.create || v.ver != h.ver+1 || v.mod <= h.mod {
			return corrupt("key %q: version %d (created %d) at %d after version %d (created %d) at %d",
				key, v.ver, v.create, v.mod, h.ver, h.create, h.mod)
		}
	}
	return nil
}

// Store finishes the load: the store gets current revision rev and is then
// compacted at compact (negative: never compacted), which drops the
// versions a compaction there would have dropped. rev must be at least the
// last record's revision and the compact revision. Every key whose first
// record continues an older history must be at or below the compact
// revision, and every live key's lease must have been added. Errors wrap
// ErrCorruptSnapshot. The Loader must not be used afterwards.
func (l *Loader) Store(rev, compact int64) (*Store, error) {
	st := l.st
	l.st = nil
	if st == nil {
		return nil, fmt.Errorf("%w: loader already used", ErrNilRequest)
	}
	if rev < 1 || rev < l.last || compact > rev {
		return nil, corrupt("revision %d, compact revision %d, last record at %d", rev, compact, l.last)
	}
	if l.continued > 0 && l.continued > compact {
		return nil, corrupt("key %q: history before revision %d is missing, but the compact revision is %d",
			l.continuedKey, l.continued, compact)
	}
	var bad *ver
	st.heads.Scan(func(h *ver) bool {
		if !live(h) || h.lease == 0 {
			return true
		}
		if _, ok := st.leases.Get(leaseRec{id: h.lease}); !ok {
			bad = h
			return false
		}
		st.leaseKeys.Set(leaseKey{id: h.lease, key: h.key})
		return true
	})
	if bad != nil {
		return nil, corrupt("key %q attached to unknown lease %x", bad.key, bad.lease)
	}
	st.rev, st.size = rev, l.size
	s := New()
	s.install(st)
	if compact >= 0 {
		if _, err := s.Compact(&pb.CompactionRequest{Revision: compact}); err != nil {
			return nil, fmt.Errorf("mvcc: compacting the loaded store at %d: %w", compact, err)
		}
	}
	return s, nil
}
