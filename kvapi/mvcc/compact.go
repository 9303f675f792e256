package mvcc

import (
	"encoding/binary"
	"hash/crc32"
	"sort"

	"github.com/tidwall/btree"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Compact discards history up to r.Revision: afterwards reads below it fail
// with ErrCompacted while reads at exactly it still work, so every key keeps
// its latest version at or below the revision (a tombstone only if it is at
// exactly the revision). Memory of the discarded versions is released at once
// whatever r.Physical says. ErrCompacted if the revision is at or below the
// current compact revision (the first compaction may be at 0), ErrFutureRev
// if above the current revision. Writer only.
//
// The work is proportional to the number of writes since the previous
// compaction, not to the number of keys.
func (s *Store) Compact(r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	if r == nil {
		return nil, ErrNilRequest
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := r.Revision
	if c <= s.compact.Load() {
		return nil, ErrCompacted
	}
	cur := s.rev.Load()
	if c > cur {
		return nil, ErrFutureRev
	}

	// Every key with a version to drop has a write in the log at or below c
	// (the log starts at the previous compact revision, whose kept
	// tombstones are dropped now) that is not the first version of a
	// generation: what precedes a first version is a tombstone, which is
	// either in the log itself or already gone. Skipping first versions keeps
	// compaction after a bulk load of fresh keys cheap.
	var freed int64
	end := len(s.log)
	for i, v := range s.log {
		if v.mod > c {
			end = i
			break
		}
		if v.ver != 1 {
			freed += s.compactKey(v.key, c)
		}
	}

	// The new log: the kept versions of revision c, then everything above.
	start := end
	for start > 0 && s.log[start-1].mod == c {
		start--
	}
	log := make([]*ver, 0, len(s.log)-start)
	for _, v := range s.log[start:end] {
		if s.kept(v) {
			log = append(log, v)
		}
	}
	log = append(log, s.log[end:]...)
	s.log = log
	s.size.Add(-freed)
	s.compact.Store(c)
	return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: cur}}, nil
}

// compactKey drops the versions of key that a compaction at c discards and
// returns the bytes freed. Calling it again for the same key and c does
// nothing.
func (s *Store) compactKey(key []byte, c int64) int64 {
	var hh, hp btree.PathHint
	h := s.head(key, &hh)
	if h == nil {
		return 0
	}
	hs, hasHist := s.histOf(key, &hp)
	all := hs.vers
	n := len(all) + 1
	get := func(i int) *ver {
		if i == len(all) {
			return h
		}
		return all[i]
	}
	// keep is the newest version at or below c (versions are in mod order).
	keep := sort.Search(n, func(i int) bool { return get(i).mod > c }) - 1
	if keep < 0 {
		return 0
	}
	drop := keep
	if v := get(keep); v.tomb() && v.mod < c {
		drop++ // a tombstone below c is not needed to read at c
	}
	if drop == 0 {
		return 0
	}
	var freed int64
	for i := range drop {
		freed += verSize(get(i))
	}
	if drop == n {
		// Nothing left: the key was deleted at or before c (h is a tombstone,
		// so it holds no lease).
		p := s.probe(key)
		s.heads.DeleteHint(p, &hh)
		s.putProbe(p)
		if hasHist {
			s.hists.DeleteHint(hist{key: key}, &hp)
		}
		return freed
	}
	if rest := len(all) - drop; rest > 0 {
		vers := make([]*ver, rest)
		copy(vers, all[drop:])
		s.hists.SetHint(hist{key: h.key, vers: vers}, &hp)
	} else {
		s.hists.DeleteHint(hist{key: key}, &hp)
	}
	return freed
}

// kept reports whether v (a version at the compact revision) survived the
// compaction: it is the key's head or still in its history.
func (s *Store) kept(v *ver) bool {
	h := s.head(v.key, nil)
	if h == nil {
		return false
	}
	if h == v {
		return true
	}
	hs, _ := s.histOf(v.key, nil)
	for _, x := range hs.vers {
		if x == v {
			return true
		}
	}
	return false
}

// Hash returns a checksum of every retained version with a revision at or
// below rev (0 means the current revision), and the compact revision (-1
// before the first compaction, as etcd's HashKV reports it). Members that applied the same writes and compactions, or restored
// from a snapshot of such a member, return the same hash. ErrCompacted if
// 0 < rev < compact revision, ErrFutureRev if rev > current revision. Safe
// from any goroutine; it works on a snapshot and does not hold up writes.
func (s *Store) Hash(rev int64) (uint32, int64, error) {
	sn := s.Snapshot()
	compact := sn.compact
	if rev > 0 && rev < sn.compact {
		return 0, compact, ErrCompacted
	}
	if rev > sn.rev {
		return 0, compact, ErrFutureRev
	}
	if rev == 0 {
		rev = sn.rev
	}
	tab := crcTable()
	var sum uint32
	var buf [8 * 5]byte
	add := func(v *ver) {
		if v.mod > rev {
			return
		}
		sum = crc32.Update(sum, tab, v.key)
		binary.LittleEndian.PutUint64(buf[0:], uint64(len(v.key)))
		binary.LittleEndian.PutUint64(buf[8:], uint64(v.mod))
		binary.LittleEndian.PutUint64(buf[16:], uint64(v.create))
		binary.LittleEndian.PutUint64(buf[24:], uint64(v.ver))
		binary.LittleEndian.PutUint64(buf[32:], uint64(v.lease))
		sum = crc32.Update(sum, tab, buf[:])
		binary.LittleEndian.PutUint64(buf[0:], uint64(len(v.value)))
		sum = crc32.Update(sum, tab, buf[:8])
		sum = crc32.Update(sum, tab, v.value)
	}
	// Every key with a history has a head; walk both trees in key order.
	hit := sn.hists.Iter()
	more := hit.First()
	sn.heads.Scan(func(h *ver) bool {
		for more && string(hit.Item().key) < string(h.key) {
			more = hit.Next()
		}
		if more && string(hit.Item().key) == string(h.key) {
			for _, v := range hit.Item().vers {
				add(v)
			}
		}
		add(h)
		return true
	})
	hit.Release()
	return sum, compact, nil
}
