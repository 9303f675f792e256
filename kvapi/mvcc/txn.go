package mvcc

import (
	"bytes"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Txn applies a txn request atomically: all compares (nested ones included)
// are evaluated against the state before the txn, the ops of the taken
// branches run in order and see each other's writes, and everything they
// write becomes one revision (none if nothing is written). State-dependent
// checks (lease exists, ignore_value/ignore_lease key exists, range revision
// neither compacted nor future) apply to the taken branches only, before
// anything changes; a txn that fails changes nothing.
//
// The store checks CheckTxn's rules itself except the op limit, which is the
// caller's to enforce with its configured value. A txn for which TxnReadOnly
// is true only reads and may be called from any goroutine; any other txn is a
// write and belongs to the writer.
func (s *Store) Txn(r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := checkTxnUnlimited(r); err != nil {
		return nil, err
	}
	if TxnReadOnly(r) {
		s.mu.RLock()
		defer s.mu.RUnlock()
		cur := s.rev.Load()
		path := s.txnPath(r, nil)
		if _, err := s.checkTxnPath(r, path, cur); err != nil {
			return nil, err
		}
		resp, _, err := s.execTxn(nil, r, path, cur)
		if err != nil {
			return nil, err
		}
		resp.Header.Revision = cur
		return resp, nil
	}

	s.mu.Lock()
	cur := s.rev.Load()
	path := s.txnPath(r, nil)
	if _, err := s.checkTxnPath(r, path, cur); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	w := s.begin()
	resp, _, err := s.execTxn(w, r, path, cur)
	if err != nil {
		s.rollback(w)
		s.mu.Unlock()
		return nil, err
	}
	resp.Header.Revision = w.readRev()
	evs := s.commit(w)
	s.unlockNotify(w.rev, evs)
	return resp, nil
}

// txnPath evaluates the compares of r and of the nested txns on the branches
// taken, depth first, against the current state, and appends the outcomes to
// path.
func (s *Store) txnPath(r *pb.TxnRequest, path []bool) []bool {
	ok := s.compares(r.Compare)
	path = append(path, ok)
	ops := r.Success
	if !ok {
		ops = r.Failure
	}
	for _, op := range ops {
		if t := op.GetRequestTxn(); t != nil {
			path = s.txnPath(t, path)
		}
	}
	return path
}

// branch returns the ops of the branch that path[0] selects.
func branch(r *pb.TxnRequest, path []bool) []*pb.RequestOp {
	if path[0] {
		return r.Success
	}
	return r.Failure
}

// checkTxnPath runs the state-dependent checks of the taken branches against
// the state before the txn (revision cur). It returns how many path entries
// r consumed.
func (s *Store) checkTxnPath(r *pb.TxnRequest, path []bool, cur int64) (int, error) {
	used := 1
	for _, op := range branch(r, path) {
		switch v := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			rev := v.RequestRange.Revision
			switch {
			case rev == 0:
			case rev > cur:
				return 0, ErrFutureRev
			case rev < s.compact.Load():
				return 0, ErrCompacted
			}
		case *pb.RequestOp_RequestPut:
			p := v.RequestPut
			if p.IgnoreValue || p.IgnoreLease {
				if !live(s.head(p.Key, nil)) {
					return 0, ErrKeyNotFound
				}
			}
			if p.Lease != 0 && !s.leaseExists(p.Lease) {
				return 0, ErrLeaseNotFound
			}
		case *pb.RequestOp_RequestTxn:
			n, err := s.checkTxnPath(v.RequestTxn, path[used:], cur)
			if err != nil {
				return 0, err
			}
			used += n
		}
	}
	return used, nil
}

// execTxn runs the taken branch of r. w is nil for a read-only txn, which
// reads at cur. It returns the response (header revision left for the caller:
// a nested txn's stays 0, as in etcd) and how many path entries r consumed.
func (s *Store) execTxn(w *writeTxn, r *pb.TxnRequest, path []bool, cur int64) (*pb.TxnResponse, int, error) {
	ops := branch(r, path)
	resp := &pb.TxnResponse{
		Succeeded: path[0],
		Header:    &pb.ResponseHeader{},
		Responses: make([]*pb.ResponseOp, len(ops)),
	}
	used := 1
	for i, op := range ops {
		switch v := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			rc := cur
			if w != nil {
				rc = w.readRev()
			}
			rr, err := s.execRange(v.RequestRange, rc, true)
			if err != nil {
				return nil, 0, err
			}
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: rr}}
		case *pb.RequestOp_RequestPut:
			pr, err := s.applyPut(w, v.RequestPut)
			if err != nil {
				return nil, 0, err
			}
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: pr}}
		case *pb.RequestOp_RequestDeleteRange:
			dr := s.applyDelete(w, v.RequestDeleteRange)
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}}
		case *pb.RequestOp_RequestTxn:
			tr, n, err := s.execTxn(w, v.RequestTxn, path[used:], cur)
			if err != nil {
				return nil, 0, err
			}
			used += n
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: tr}}
		}
	}
	return resp, used, nil
}

// compares reports whether every compare holds (evaluation stops at the first
// that does not).
func (s *Store) compares(cs []*pb.Compare) bool {
	for _, c := range cs {
		if !s.compare(c) {
			return false
		}
	}
	return true
}

// compare evaluates one compare against the latest state. With a range_end it
// must hold for every key in the range. A VALUE compare on no key is false;
// other targets compare a missing key as zero.
func (s *Store) compare(c *pb.Compare) bool {
	found, ok := false, true
	s.scanKeys(c.Key, c.RangeEnd, func(h *ver) bool {
		if h.tomb() {
			return true
		}
		found = true
		if !compareVer(c, h) {
			ok = false
			return false
		}
		return true
	})
	if !found {
		if c.Target == pb.Compare_VALUE {
			return false
		}
		return compareVer(c, &ver{})
	}
	return ok
}

func compareVer(c *pb.Compare, v *ver) bool {
	var res int
	switch c.Target {
	case pb.Compare_VALUE:
		var want []byte
		if t, _ := c.TargetUnion.(*pb.Compare_Value); t != nil {
			want = t.Value
		}
		res = bytes.Compare(v.value, want)
	case pb.Compare_CREATE:
		var want int64
		if t, _ := c.TargetUnion.(*pb.Compare_CreateRevision); t != nil {
			want = t.CreateRevision
		}
		res = cmpInt(v.create, want)
	case pb.Compare_MOD:
		var want int64
		if t, _ := c.TargetUnion.(*pb.Compare_ModRevision); t != nil {
			want = t.ModRevision
		}
		res = cmpInt(v.mod, want)
	case pb.Compare_VERSION:
		var want int64
		if t, _ := c.TargetUnion.(*pb.Compare_Version); t != nil {
			want = t.Version
		}
		res = cmpInt(v.ver, want)
	case pb.Compare_LEASE:
		var want int64
		if t, _ := c.TargetUnion.(*pb.Compare_Lease); t != nil {
			want = t.Lease
		}
		res = cmpInt(v.lease, want)
	}
	switch c.Result {
	case pb.Compare_EQUAL:
		return res == 0
	case pb.Compare_NOT_EQUAL:
		return res != 0
	case pb.Compare_GREATER:
		return res > 0
	case pb.Compare_LESS:
		return res < 0
	}
	return true
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
