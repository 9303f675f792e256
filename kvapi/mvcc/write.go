package mvcc

import (
	"github.com/tidwall/btree"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// writeTxn is the state of the one write in progress (the writer holds mu).
type writeTxn struct {
	rev     int64  // the revision this write creates if it changes anything
	changes []*ver // versions written so far, in order
	journal []undo // each touched key's state before the write, for rollback
	keys    int64  // change in the number of live keys so far
}

// undo records a key's head and history as they were before the write first
// touched it.
type undo struct {
	key     []byte
	head    *ver
	hist    hist
	hadHist bool
}

// begin starts a write on top of the current revision.
func (s *Store) begin() *writeTxn {
	w := &s.w
	w.rev = s.rev.Load() + 1
	w.changes = w.changes[:0]
	w.journal = w.journal[:0]
	w.keys = 0
	return w
}

// readRev is the revision a read inside w sees: the new one once w has
// written something, the old one before.
func (w *writeTxn) readRev() int64 {
	if len(w.changes) > 0 {
		return w.rev
	}
	return w.rev - 1
}

// pushHist moves prev (the key's head about to be replaced) into the key's
// history, journaling the key if this is the write's first touch of it.
func (s *Store) pushHist(w *writeTxn, prev *ver) {
	var hint btree.PathHint
	h, ok := s.histOf(prev.key, &hint)
	if prev.mod != w.rev {
		w.journal = append(w.journal, undo{key: prev.key, head: prev, hist: h, hadHist: ok})
	}
	h.key = prev.key
	h.vers = append(h.vers, prev)
	s.hists.SetHint(h, &hint)
}

// put writes a new version of key. prev is the key's current head (nil if
// the key has none) and hint the path found while looking it up.
func (s *Store) put(w *writeTxn, key, value []byte, lease int64, prev *ver, hint *btree.PathHint) *ver {
	if len(value) == 0 {
		value = nil // one representation of the empty value
	}
	nv := &ver{key: key, value: value, mod: w.rev, create: w.rev, ver: 1, lease: lease}
	var oldLease int64
	if prev != nil {
		nv.key = prev.key // share one copy of the key bytes among versions
		if !prev.tomb() {
			nv.create = prev.create
			nv.ver = prev.ver + 1
			oldLease = prev.lease
		}
		s.pushHist(w, prev)
	} else {
		w.journal = append(w.journal, undo{key: key})
	}
	if prev == nil || prev.tomb() {
		w.keys++
	}
	s.heads.SetHint(nv, hint)
	if oldLease != lease {
		if oldLease != 0 {
			s.leaseKeys.Delete(leaseKey{id: oldLease, key: nv.key})
		}
		if lease != 0 {
			s.leaseKeys.Set(leaseKey{id: lease, key: nv.key})
		}
	}
	w.changes = append(w.changes, nv)
	return nv
}

// del writes a tombstone over prev, a live head.
func (s *Store) del(w *writeTxn, prev *ver) {
	tv := &ver{key: prev.key, mod: w.rev}
	w.keys--
	s.pushHist(w, prev)
	s.heads.Set(tv)
	if prev.lease != 0 {
		s.leaseKeys.Delete(leaseKey{id: prev.lease, key: prev.key})
	}
	w.changes = append(w.changes, tv)
}

// rollback undoes every change of w.
func (s *Store) rollback(w *writeTxn) {
	for i := len(w.journal) - 1; i >= 0; i-- {
		j := &w.journal[i]
		cur := s.head(j.key, nil)
		if live(cur) && cur.lease != 0 {
			s.leaseKeys.Delete(leaseKey{id: cur.lease, key: cur.key})
		}
		if j.head == nil {
			p := s.probe(j.key)
			s.heads.Delete(p)
			s.putProbe(p)
		} else {
			s.heads.Set(j.head)
			if live(j.head) && j.head.lease != 0 {
				s.leaseKeys.Set(leaseKey{id: j.head.lease, key: j.head.key})
			}
		}
		if j.hadHist {
			s.hists.Set(j.hist)
		} else {
			s.hists.Delete(hist{key: j.key})
		}
	}
	s.finish(w)
}

// commit makes w's changes a new revision (if there are any) and returns the
// events for the observer (nil if there is no observer or no change).
func (s *Store) commit(w *writeTxn) []mvccpb.Event {
	if len(w.changes) == 0 {
		s.finish(w)
		return nil
	}
	s.log = append(s.log, w.changes...)
	var grow int64
	for _, v := range w.changes {
		grow += verSize(v)
	}
	s.size.Add(grow)
	s.keys.Add(w.keys)
	s.rev.Store(w.rev)
	var evs []mvccpb.Event
	if s.observer != nil {
		evs = s.events(s.heads, s.hists, w.changes, s.compact.Load())
	}
	s.finish(w)
	return evs
}

// finish drops w's references so that the scratch state retains nothing.
func (s *Store) finish(w *writeTxn) {
	clear(w.changes)
	clear(w.journal)
	w.changes = w.changes[:0]
	w.journal = w.journal[:0]
	w.keys = 0
}

// unlockNotify releases the writer lock and then hands evs to the observer.
func (s *Store) unlockNotify(rev int64, evs []mvccpb.Event) {
	fn := s.observer
	s.mu.Unlock()
	if fn != nil && evs != nil {
		fn(rev, evs)
	}
}

// putResponse allocates a PutResponse and its header together.
func newPutResponse(rev int64) *pb.PutResponse {
	b := &struct {
		r pb.PutResponse
		h pb.ResponseHeader
	}{}
	b.h.Revision = rev
	b.r.Header = &b.h
	return &b.r
}

// Put applies a put request. The store keeps r.Key and r.Value (no copy):
// the caller must not modify them afterwards. Writer only.
func (s *Store) Put(r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := CheckPut(r); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if r.Lease != 0 && !s.leaseExists(r.Lease) {
		s.mu.Unlock()
		return nil, ErrLeaseNotFound
	}
	w := s.begin()
	resp, err := s.applyPut(w, r)
	if err != nil {
		s.rollback(w)
		s.mu.Unlock()
		return nil, err
	}
	evs := s.commit(w)
	s.unlockNotify(w.rev, evs)
	return resp, nil
}

// applyPut performs a put inside w. It fails (before changing anything) only
// if ignore_value or ignore_lease names a missing key.
func (s *Store) applyPut(w *writeTxn, r *pb.PutRequest) (*pb.PutResponse, error) {
	var hint btree.PathHint
	prev := s.head(r.Key, &hint)
	exists := live(prev)
	if (r.IgnoreValue || r.IgnoreLease) && !exists {
		return nil, ErrKeyNotFound
	}
	value, lease := r.Value, r.Lease
	if r.IgnoreValue {
		value = prev.value
	}
	if r.IgnoreLease {
		lease = prev.lease
	}
	resp := newPutResponse(w.rev)
	if r.PrevKv && exists {
		resp.PrevKv = newKV(prev)
	}
	s.put(w, r.Key, value, lease, prev, &hint)
	return resp, nil
}

// DeleteRange applies a delete-range request. Deleting nothing creates no
// revision. Writer only.
func (s *Store) DeleteRange(r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := CheckDeleteRange(r); err != nil {
		return nil, err
	}
	s.mu.Lock()
	w := s.begin()
	resp := s.applyDelete(w, r)
	evs := s.commit(w)
	s.unlockNotify(w.rev, evs)
	return resp, nil
}

// applyDelete performs a delete-range inside w.
func (s *Store) applyDelete(w *writeTxn, r *pb.DeleteRangeRequest) *pb.DeleteRangeResponse {
	var victims []*ver
	s.scanKeys(r.Key, r.RangeEnd, func(h *ver) bool {
		if !h.tomb() {
			victims = append(victims, h)
		}
		return true
	})
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{}}
	if r.PrevKv && len(victims) > 0 {
		kvs := make([]mvccpb.KeyValue, len(victims))
		resp.PrevKvs = make([]*mvccpb.KeyValue, len(victims))
		for i, v := range victims {
			kvOf(&kvs[i], v)
			resp.PrevKvs[i] = &kvs[i]
		}
	}
	for _, v := range victims {
		s.del(w, v)
	}
	resp.Deleted = int64(len(victims))
	resp.Header.Revision = w.readRev()
	return resp
}
