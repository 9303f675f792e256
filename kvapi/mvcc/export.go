package mvcc

import (
	"bytes"
	"cmp"
	"slices"
)

// Record is one stored version of a key, as Snapshot.Records exports it and
// Loader.Add takes it. Version 0 marks a delete's tombstone, which has only
// Key and ModRev.
type Record struct {
	Key       []byte
	Value     []byte
	CreateRev int64
	ModRev    int64
	Version   int64
	Lease     int64
}

// Tombstone reports whether r is a delete's tombstone.
func (r *Record) Tombstone() bool { return r.Version == 0 }

func recordOf(r *Record, v *ver) {
	*r = Record{Key: v.key, Value: v.value, CreateRev: v.create, ModRev: v.mod, Version: v.ver, Lease: v.lease}
}

// CompactRev returns the compact revision the snapshot was taken at, -1 if
// the store was never compacted.
func (sn *Snapshot) CompactRev() int64 { return sn.compact }

// base returns the versions kept below the compact revision (at most one per
// key: the one a read at the compact revision sees), sorted by revision and
// then key. Computed once per snapshot.
func (sn *Snapshot) base() []*ver {
	sn.baseOnce.Do(func() {
		if sn.compact <= 0 {
			return // nothing below the compact revision
		}
		sn.baseVers = make([]*ver, 0, sn.heads.Len())
		hit := sn.hists.Iter()
		more := hit.First()
		sn.heads.Scan(func(h *ver) bool {
			oldest := h
			for more && string(hit.Item().key) < string(h.key) {
				more = hit.Next()
			}
			if more && string(hit.Item().key) == string(h.key) && len(hit.Item().vers) > 0 {
				oldest = hit.Item().vers[0]
			}
			if oldest.mod < sn.compact {
				sn.baseVers = append(sn.baseVers, oldest)
			}
			return true
		})
		hit.Release()
		slices.SortFunc(sn.baseVers, func(a, b *ver) int {
			return cmp.Or(cmp.Compare(a.mod, b.mod), bytes.Compare(a.key, b.key))
		})
	})
	return sn.baseVers
}

// Records calls fn for every retained version in ascending revision order:
// first the versions kept below the compact revision (one per key, keys of a
// revision in key order), then every version since the compact revision in
// write order. Replaying them into a Loader rebuilds the store. The Record
// is reused between calls; its slices are shared with the store and must
// not be modified. An error from fn stops the walk and is returned.
//
// The first call on a snapshot sorts the older versions, holding a pointer
// per key in memory for the snapshot's lifetime; the walk itself allocates
// nothing.
func (sn *Snapshot) Records(fn func(r *Record) error) error {
	var r Record
	for _, v := range sn.base() {
		recordOf(&r, v)
		if err := fn(&r); err != nil {
			return err
		}
	}
	for _, v := range sn.log {
		recordOf(&r, v)
		if err := fn(&r); err != nil {
			return err
		}
	}
	return nil
}

// Leases calls fn for every lease, in ascending ID order, without keys. An
// error from fn stops the walk and is returned.
func (sn *Snapshot) Leases(fn func(LeaseInfo) error) error {
	var err error
	sn.leases.Scan(func(l leaseRec) bool {
		err = fn(LeaseInfo{ID: l.id, TTL: l.ttl, RemainingTTL: l.remaining})
		return err == nil
	})
	return err
}
