package mvcc

import (
	"fmt"
	"sort"

	"github.com/tidwall/btree"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// historyBatch is about how many events History gathers under the read lock
// before it releases the lock and hands them out.
const historyBatch = 512

// events turns versions (all of one revision, in write order) into watch
// events. A PUT carries the new key-value; a DELETE carries only the key and
// the revision of the delete, as etcd. PrevKv is the key as it was at the
// revision before (nil if it did not exist then, or if that revision is
// compacted). The caller holds mu.
func (s *Store) events(heads *btree.BTreeG[*ver], hists *btree.BTreeG[hist], vs []*ver, compact int64) []mvccpb.Event {
	evs := make([]mvccpb.Event, len(vs))
	kvs := make([]mvccpb.KeyValue, 2*len(vs))
	for i, v := range vs {
		kv := &kvs[2*i]
		if v.tomb() {
			evs[i].Type = mvccpb.DELETE
			kv.Key = v.key
			kv.ModRevision = v.mod
		} else {
			evs[i].Type = mvccpb.PUT
			kvOf(kv, v)
		}
		evs[i].Kv = kv
		if v.mod-1 < compact || v.ver == 1 {
			continue // compacted, or a creation (nothing before it)
		}
		p := s.probe(v.key)
		h, ok := heads.Get(p)
		s.putProbe(p)
		if !ok {
			continue
		}
		if prev := at(hists, h, v.mod-1); live(prev) {
			pkv := &kvs[2*i+1]
			kvOf(pkv, prev)
			evs[i].PrevKv = pkv
		}
	}
	return evs
}

// History replays the events of the revisions in [startRev, endRev) in
// order, one call of fn per revision that has events; endRev 0 means up to
// and including the current revision. Replay stops early when fn returns
// false. Each revision's events are in write order with the shape SetObserver
// gives them.
//
// As etcd's watch: startRev below the compact revision is ErrCompacted;
// startRev equal to it works, and yields the events of that revision that
// compaction kept (a put overwritten by a delete of the same key in that
// revision is gone; the delete remains). If a compaction overtakes a replay
// in progress, History returns ErrCompacted after the events it already
// delivered.
//
// fn is called without any lock held, so it may read the store and may take
// its time, but the events it gets become stale meanwhile. Safe from any
// goroutine.
func (s *Store) History(startRev, endRev int64, fn func(rev int64, evs []mvccpb.Event) bool) error {
	if fn == nil {
		return fmt.Errorf("%w: nil History callback", ErrNilRequest)
	}
	s.mu.RLock()
	if startRev < s.compact.Load() {
		s.mu.RUnlock()
		return ErrCompacted
	}
	if cur := s.rev.Load(); endRev <= 0 || endRev > cur+1 {
		endRev = cur + 1
	}
	s.mu.RUnlock()

	type group struct {
		rev int64
		evs []mvccpb.Event
	}
	next := startRev
	for next < endRev {
		s.mu.RLock()
		compact := s.compact.Load()
		if next < compact {
			s.mu.RUnlock()
			return ErrCompacted
		}
		log := s.log
		i := sort.Search(len(log), func(i int) bool { return log[i].mod >= next })
		var groups []group
		n := 0
		for i < len(log) && log[i].mod < endRev && n < historyBatch {
			rev := log[i].mod
			j := i
			for j < len(log) && log[j].mod == rev {
				j++
			}
			groups = append(groups, group{rev: rev, evs: s.events(s.heads, s.hists, log[i:j], compact)})
			n += j - i
			i = j
		}
		s.mu.RUnlock()
		if len(groups) == 0 {
			return nil
		}
		for _, g := range groups {
			if !fn(g.rev, g.evs) {
				return nil
			}
		}
		next = groups[len(groups)-1].rev + 1
	}
	return nil
}
