package mvcc

import (
	"bytes"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Range answers a range request at the current revision or, with
// r.Revision > 0, at that historical revision. Safe to call from any
// goroutine. The returned KeyValues share key and value bytes with the store:
// do not modify them.
func (s *Store) Range(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := CheckRange(r); err != nil {
		return nil, err
	}
	s.mu.RLock()
	resp, err := s.execRange(r, s.rev.Load(), true)
	s.mu.RUnlock()
	return resp, err
}

// RangeChunk is Range without the total count, for reading a range in
// chunks (etcd's RangeStream): with a limit and key order, the scan stops
// one key past the limit instead of counting every key in the range, so
// Count is only the number of keys the scan visited (at most Limit+1), as
// in etcd's chunks. Count-only requests and requests that sort by anything
// but the key or filter by revision still count everything.
func (s *Store) RangeChunk(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := CheckRange(r); err != nil {
		return nil, err
	}
	s.mu.RLock()
	resp, err := s.execRange(r, s.rev.Load(), false)
	s.mu.RUnlock()
	return resp, err
}

// rangeResp allocates the parts of a small range response together.
type rangeResp struct {
	r   pb.RangeResponse
	h   pb.ResponseHeader
	kv  mvccpb.KeyValue
	kvs [1]*mvccpb.KeyValue
}

// execRange runs r against the live trees, where cur is the revision a read
// sees now. With total false, a limited scan in key order stops once it has
// fetched enough (see RangeChunk). The caller holds mu (shared or
// exclusive).
func (s *Store) execRange(r *pb.RangeRequest, cur int64, total bool) (*pb.RangeResponse, error) {
	rev := r.Revision
	if rev > cur {
		return nil, ErrFutureRev
	}
	if rev <= 0 {
		rev = cur
	}
	if rev < s.compact.Load() {
		return nil, ErrCompacted
	}

	filtered := r.MinModRevision != 0 || r.MaxModRevision != 0 ||
		r.MinCreateRevision != 0 || r.MaxCreateRevision != 0
	fetch := r.Limit
	if r.SortOrder != pb.RangeRequest_NONE || filtered {
		fetch = 0 // fetch everything; filter, sort and truncate afterwards
	}
	if fetch > 0 {
		fetch++ // one more than asked, to learn whether there is more
	}

	b := &rangeResp{}
	b.h.Revision = cur
	b.r.Header = &b.h

	var vs []*ver
	var n int64 // keys in the range (the ones visited, without total)
	p := s.probe(r.Key)
	if len(r.RangeEnd) == 0 {
		// Single key: no scan, no slice.
		if h, ok := s.heads.Get(p); ok {
			if v := at(s.hists, h, rev); live(v) {
				n = 1
				if !r.CountOnly {
					vs = []*ver{v}
				}
			}
		}
	} else {
		if !r.CountOnly {
			if fetch > 0 {
				vs = make([]*ver, 0, min(fetch, 1024))
			} else {
				vs = make([]*ver, 0, 16)
			}
		}
		scan(s.heads, p, r.RangeEnd, func(h *ver) bool {
			v := h
			if h.mod > rev { // changed since rev: look in the history
				v = at(s.hists, h, rev)
			}
			if !live(v) {
				return true
			}
			n++
			if !r.CountOnly && (fetch <= 0 || int64(len(vs)) < fetch) {
				vs = append(vs, v)
			}
			return total || r.CountOnly || fetch <= 0 || int64(len(vs)) < fetch
		})
	}
	s.putProbe(p)
	b.r.Count = n
	if r.CountOnly {
		return &b.r, nil
	}

	if filtered {
		vs = filterVers(vs, r)
	}
	sortVers(vs, r.SortOrder, r.SortTarget)
	if r.Limit > 0 && int64(len(vs)) > r.Limit {
		vs = vs[:r.Limit]
		b.r.More = true
	}

	switch len(vs) {
	case 0:
	case 1:
		kvOf(&b.kv, vs[0])
		b.kvs[0] = &b.kv
		b.r.Kvs = b.kvs[:]
	default:
		kvs := make([]mvccpb.KeyValue, len(vs))
		b.r.Kvs = make([]*mvccpb.KeyValue, len(vs))
		for i, v := range vs {
			kvOf(&kvs[i], v)
			b.r.Kvs[i] = &kvs[i]
		}
	}
	if r.KeysOnly {
		// As etcd 3.7: unless it sorts by value, a keys-only range is served
		// from the key index, and its key-values carry neither value nor
		// lease.
		noLease := r.SortTarget != pb.RangeRequest_VALUE
		for _, kv := range b.r.Kvs {
			kv.Value = nil
			if noLease {
				kv.Lease = 0
			}
		}
	}
	return &b.r, nil
}

// filterVers drops the versions outside r's mod/create revision bounds
// (each bound applies when non-zero).
func filterVers(vs []*ver, r *pb.RangeRequest) []*ver {
	out := vs[:0]
	for _, v := range vs {
		switch {
		case r.MaxModRevision != 0 && v.mod > r.MaxModRevision:
		case r.MinModRevision != 0 && v.mod < r.MinModRevision:
		case r.MaxCreateRevision != 0 && v.create > r.MaxCreateRevision:
		case r.MinCreateRevision != 0 && v.create < r.MinCreateRevision:
		default:
			out = append(out, v)
		}
	}
	clear(vs[len(out):])
	return out
}

// verSorter orders versions by one sort target. It goes through sort.Sort
// (not a stable sort) on input in key order, exactly as etcd does, so that
// versions that compare equal come out in the same order as from etcd.
var _ sort.Interface = (*verSorter)(nil)

type verSorter struct {
	vs   []*ver
	less func(a, b *ver) bool
}

func (s *verSorter) Len() int           { return len(s.vs) }
func (s *verSorter) Swap(i, j int)      { s.vs[i], s.vs[j] = s.vs[j], s.vs[i] }
func (s *verSorter) Less(i, j int) bool { return s.less(s.vs[i], s.vs[j]) }

func lessKey(a, b *ver) bool     { return bytes.Compare(a.key, b.key) < 0 }
func lessValue(a, b *ver) bool   { return bytes.Compare(a.value, b.value) < 0 }
func lessVersion(a, b *ver) bool { return a.ver-b.ver < 0 }
func lessCreate(a, b *ver) bool  { return a.create-b.create < 0 }
func lessMod(a, b *ver) bool     { return a.mod-b.mod < 0 }

// sortVers sorts vs (which is in ascending key order) as a range request
// asks. A target other than KEY with order NONE sorts ascending.
func sortVers(vs []*ver, order pb.RangeRequest_SortOrder, target pb.RangeRequest_SortTarget) {
	if target != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	} else if target == pb.RangeRequest_KEY && order == pb.RangeRequest_ASCEND {
		order = pb.RangeRequest_NONE // already in key order
	}
	if order == pb.RangeRequest_NONE || len(vs) < 2 {
		return
	}
	var less func(a, b *ver) bool
	switch target {
	case pb.RangeRequest_KEY:
		less = lessKey
	case pb.RangeRequest_VERSION:
		less = lessVersion
	case pb.RangeRequest_CREATE:
		less = lessCreate
	case pb.RangeRequest_MOD:
		less = lessMod
	case pb.RangeRequest_VALUE:
		less = lessValue
	default:
		return // rejected by CheckRange
	}
	srt := &verSorter{vs: vs, less: less}
	switch order {
	case pb.RangeRequest_ASCEND:
		sort.Sort(srt)
	case pb.RangeRequest_DESCEND:
		sort.Sort(sort.Reverse(srt))
	}
}
