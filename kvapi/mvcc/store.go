package mvcc

import (
	"bytes"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/tidwall/btree"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// btreeDegree is the degree of every B-tree in the store (up to 2*degree-1
// items per node). Smaller nodes make the copy-on-write clones after a
// Snapshot cheaper; larger ones save a little memory and depth.
const btreeDegree = 32

// verOverhead approximates the bytes one stored version costs beyond its key
// and value bytes (the ver struct, its B-tree slot and its log slot).
const verOverhead = 96

// leaseOverhead approximates the bytes one lease record costs.
const leaseOverhead = 48

// ver is one version of a key: a put, or a tombstone (version 0) left by a
// delete. A ver never changes once the write that created it has returned;
// snapshots, the log and historical reads share them freely.
type ver struct {
	key    []byte
	value  []byte
	mod    int64 // revision of this write
	create int64 // revision that created this generation of the key (0 for a tombstone)
	ver    int64 // version within the generation; 0 marks a tombstone
	lease  int64
}

func (v *ver) tomb() bool { return v.ver == 0 }

// live reports whether v is a version that makes the key exist.
func live(v *ver) bool { return v != nil && v.ver != 0 }

func verLess(a, b *ver) bool { return string(a.key) < string(b.key) }

// hist holds the retained older versions of one key, oldest first. Versions of
// one revision (a put then a delete inside one txn) keep their write order.
// The slice is append-only: a new hist value may share its backing array with
// an older one (held by a snapshot), which never looks past its own length;
// compaction always copies.
type hist struct {
	key  []byte
	vers []*ver
}

func histLess(a, b hist) bool { return string(a.key) < string(b.key) }

// leaseRec is one granted lease.
type leaseRec struct {
	id        int64
	ttl       int64
	remaining int64  // last checkpointed remaining TTL in seconds, 0 if none since the grant or the last renewal
	granted   uint64 // log index of the grant (0: unknown, e.g. loaded from another store)
	renewed   uint64 // log index of the last renewal (0: never renewed)
}

func leaseLess(a, b leaseRec) bool { return a.id < b.id }

// leaseKey attaches key to lease id.
type leaseKey struct {
	id  int64
	key []byte
}

func leaseKeyLess(a, b leaseKey) bool {
	if a.id != b.id {
		return a.id < b.id
	}
	return string(a.key) < string(b.key)
}

// Store is an in-memory MVCC key-value store with etcd v3 semantics. See the
// package documentation for the concurrency contract.
type Store struct {
	// mu: the writer holds it exclusively for the whole of each write;
	// readers hold it shared.
	mu sync.RWMutex

	heads     *btree.BTreeG[*ver]     // latest version of every key (tombstones included until compacted)
	hists     *btree.BTreeG[hist]     // older versions of keys that have any
	leases    *btree.BTreeG[leaseRec] // granted leases
	leaseKeys *btree.BTreeG[leaseKey] // (lease, key) for every live key with a lease; derived from heads

	// log holds every retained version with mod >= the compact revision, in
	// write order (so grouped by ascending revision). Append-only; Compact
	// replaces it with a fresh slice.
	log []*ver

	rev     atomic.Int64 // current revision
	compact atomic.Int64 // last compact revision; -1 before the first compaction (as etcd)
	size    atomic.Int64 // approximate bytes held
	keys    atomic.Int64 // live keys (heads that are not tombstones)

	observer func(rev int64, evs []mvccpb.Event)

	probes sync.Pool // *ver used as search keys by readers
	w      writeTxn  // the writer's scratch state, reused across writes
}

// New returns an empty store at revision 1 with no compaction.
func New() *Store {
	s := &Store{}
	s.probes.New = func() any { return new(ver) }
	st := newState()
	s.install(st)
	return s
}

// state is the replaceable part of a Store (what Restore swaps in).
type state struct {
	heads     *btree.BTreeG[*ver]
	hists     *btree.BTreeG[hist]
	leases    *btree.BTreeG[leaseRec]
	leaseKeys *btree.BTreeG[leaseKey]
	log       []*ver
	rev       int64
	compact   int64
	size      int64
}

func newState() *state {
	opts := btree.Options{Degree: btreeDegree, NoLocks: true}
	return &state{
		heads:     btree.NewBTreeGOptions(verLess, opts),
		hists:     btree.NewBTreeGOptions(histLess, opts),
		leases:    btree.NewBTreeGOptions(leaseLess, opts),
		leaseKeys: btree.NewBTreeGOptions(leaseKeyLess, opts),
		rev:       1,
		compact:   -1,
	}
}

// install replaces the store's state; the caller holds mu exclusively (or
// owns the store exclusively, as New does).
func (s *Store) install(st *state) {
	s.heads, s.hists, s.leases, s.leaseKeys = st.heads, st.hists, st.leases, st.leaseKeys
	s.log = st.log
	s.rev.Store(st.rev)
	s.compact.Store(st.compact)
	s.size.Store(st.size)
	var keys int64
	st.heads.Scan(func(v *ver) bool {
		if live(v) {
			keys++
		}
		return true
	})
	s.keys.Store(keys)
}

// Rev returns the current revision.
func (s *Store) Rev() int64 { return s.rev.Load() }

// CompactRev returns the revision of the last compaction, 0 if none.
func (s *Store) CompactRev() int64 { return max(s.compact.Load(), 0) }

// Size returns the approximate number of bytes the store holds: keys and
// values of every retained version plus a fixed overhead per version and per
// lease.
func (s *Store) Size() int64 { return s.size.Load() }

// Keys returns the number of live keys (etcd's etcd_debugging_mvcc_keys_total).
func (s *Store) Keys() int64 { return s.keys.Load() }

// SetObserver registers fn to be called after each write that creates a
// revision, with that revision's events in write order (see History for their
// shape). fn runs synchronously on the writer's goroutine after the store's
// lock is released, so it may read the store; it must not block or write.
// nil removes the observer. Restore does not call it.
func (s *Store) SetObserver(fn func(rev int64, evs []mvccpb.Event)) {
	s.mu.Lock()
	s.observer = fn
	s.mu.Unlock()
}

// probe returns a search key for key; release it with putProbe.
func (s *Store) probe(key []byte) *ver {
	p := s.probes.Get().(*ver)
	p.key = key
	return p
}

func (s *Store) putProbe(p *ver) {
	p.key = nil
	s.probes.Put(p)
}

// head returns the latest version of key (possibly a tombstone), or nil.
// hint, if not nil, records the path for a following SetHint on heads.
func (s *Store) head(key []byte, hint *btree.PathHint) *ver {
	p := s.probe(key)
	v, _ := s.heads.GetHint(p, hint)
	s.putProbe(p)
	return v
}

// histOf returns the older versions of key.
func (s *Store) histOf(key []byte, hint *btree.PathHint) (hist, bool) {
	return s.hists.GetHint(hist{key: key}, hint)
}

// at returns the version of h's key visible at rev (possibly a tombstone), or
// nil if the key had no retained version at rev. h is the key's head.
func at(hists *btree.BTreeG[hist], h *ver, rev int64) *ver {
	if h.mod <= rev {
		return h
	}
	hs, ok := hists.Get(hist{key: h.key})
	if !ok {
		return nil
	}
	i := sort.Search(len(hs.vers), func(i int) bool { return hs.vers[i].mod > rev }) - 1
	if i < 0 {
		return nil
	}
	return hs.vers[i]
}

// scan calls fn with the head of every key in [key, end) in key order, until
// fn returns false. An empty end means the single key; end "\x00" means every
// key from key on. (etcd reads a non-nil empty range_end as "to the end" in
// process; on the wire an empty field is absent, so nil and empty are the
// same here, which keeps members that decode a request and members that do
// not in agreement.)
func scan(heads *btree.BTreeG[*ver], p *ver, end []byte, fn func(h *ver) bool) {
	if len(end) == 0 {
		if h, ok := heads.Get(p); ok {
			fn(h)
		}
		return
	}
	toEnd := len(end) == 1 && end[0] == 0
	it := heads.Iter()
	for ok := it.Seek(p); ok; ok = it.Next() {
		h := it.Item()
		if !toEnd && bytes.Compare(h.key, end) >= 0 {
			break
		}
		if !fn(h) {
			break
		}
	}
	it.Release()
}

// scanKeys is scan on the live heads, with a pooled probe.
func (s *Store) scanKeys(key, end []byte, fn func(h *ver) bool) {
	p := s.probe(key)
	scan(s.heads, p, end, fn)
	s.putProbe(p)
}

// kvOf fills kv from v (a put).
func kvOf(kv *mvccpb.KeyValue, v *ver) {
	kv.Key = v.key
	kv.Value = v.value
	kv.CreateRevision = v.create
	kv.ModRevision = v.mod
	kv.Version = v.ver
	kv.Lease = v.lease
}

// newKV returns a KeyValue for v (a put).
func newKV(v *ver) *mvccpb.KeyValue {
	kv := new(mvccpb.KeyValue)
	kvOf(kv, v)
	return kv
}

func verSize(v *ver) int64 { return int64(len(v.key)+len(v.value)) + verOverhead }
