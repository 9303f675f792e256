package mvcc

import (
	"bytes"
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// DefaultMaxTxnOps is etcd's default limit on the length of each list of a
// txn (compares, success ops, failure ops).
const DefaultMaxTxnOps = 128

// CheckPut validates a put request without looking at any state.
func CheckPut(r *pb.PutRequest) error {
	if r == nil {
		return ErrNilRequest
	}
	if len(r.Key) == 0 {
		return ErrEmptyKey
	}
	if r.IgnoreValue && len(r.Value) != 0 {
		return ErrValueProvided
	}
	if r.IgnoreLease && r.Lease != 0 {
		return ErrLeaseProvided
	}
	return nil
}

// CheckRange validates a range request without looking at any state.
func CheckRange(r *pb.RangeRequest) error {
	if r == nil {
		return ErrNilRequest
	}
	if len(r.Key) == 0 {
		return ErrEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.SortOrder)]; !ok {
		return ErrInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.SortTarget)]; !ok {
		return ErrInvalidSortOption
	}
	return nil
}

// CheckDeleteRange validates a delete-range request without looking at any
// state.
func CheckDeleteRange(r *pb.DeleteRangeRequest) error {
	if r == nil {
		return ErrNilRequest
	}
	if len(r.Key) == 0 {
		return ErrEmptyKey
	}
	return nil
}

// CheckTxn validates a txn request without looking at any state, with etcd's
// rules and in etcd's order: no list (compares, success, failure) longer than
// maxTxnOps (a nested txn gets maxTxnOps minus its parent's longest list),
// no empty compare key, every op valid (an op with no request is
// ErrKeyNotFound), then no duplicate writes (ErrDuplicateKey: a key put twice,
// or put and deleted, except by the two branches of one nested txn, and a
// put before a delete of the same key in a later sibling nested txn, which
// etcd accepts). maxTxnOps <= 0 means DefaultMaxTxnOps.
func CheckTxn(r *pb.TxnRequest, maxTxnOps int) error {
	if r == nil {
		return ErrNilRequest
	}
	if maxTxnOps <= 0 {
		maxTxnOps = DefaultMaxTxnOps
	}
	if err := checkTxnRequest(r, maxTxnOps); err != nil {
		return err
	}
	if _, _, err := checkIntervals(r.Success); err != nil {
		return err
	}
	if _, _, err := checkIntervals(r.Failure); err != nil {
		return err
	}
	return nil
}

// checkTxnUnlimited is the static check the store applies itself: the op
// limit is the gRPC layer's business (it knows the configured value).
func checkTxnUnlimited(r *pb.TxnRequest) error {
	return CheckTxn(r, math.MaxInt32)
}

func checkTxnRequest(r *pb.TxnRequest, maxTxnOps int) error {
	if r == nil {
		return ErrKeyNotFound
	}
	opc := max(len(r.Compare), len(r.Success), len(r.Failure))
	if opc > maxTxnOps {
		return ErrTooManyOps
	}
	for _, c := range r.Compare {
		if c == nil || len(c.Key) == 0 {
			return ErrEmptyKey
		}
	}
	for _, u := range r.Success {
		if err := checkRequestOp(u, maxTxnOps-opc); err != nil {
			return err
		}
	}
	for _, u := range r.Failure {
		if err := checkRequestOp(u, maxTxnOps-opc); err != nil {
			return err
		}
	}
	return nil
}

func checkRequestOp(u *pb.RequestOp, maxTxnOps int) error {
	if u == nil {
		return ErrKeyNotFound
	}
	switch v := u.Request.(type) {
	case *pb.RequestOp_RequestRange:
		if v.RequestRange == nil {
			return ErrKeyNotFound
		}
		return CheckRange(v.RequestRange)
	case *pb.RequestOp_RequestPut:
		if v.RequestPut == nil {
			return ErrKeyNotFound
		}
		return CheckPut(v.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		if v.RequestDeleteRange == nil {
			return ErrKeyNotFound
		}
		return CheckDeleteRange(v.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		return checkTxnRequest(v.RequestTxn, maxTxnOps)
	default:
		return ErrKeyNotFound
	}
}

// interval is a deleted key range [begin, end), or the single key begin when
// end is empty. An interval whose end is not above its begin (for example a
// range_end of "\x00", which a delete reads as "to the end of the keyspace")
// contains no key here: etcd's duplicate check treats the bytes literally.
type interval struct {
	begin, end []byte
}

func (iv interval) contains(k []byte) bool {
	if len(iv.end) == 0 {
		return bytes.Equal(iv.begin, k)
	}
	return bytes.Compare(iv.begin, k) <= 0 && bytes.Compare(k, iv.end) < 0
}

func anyContains(dels []interval, k []byte) bool {
	for _, iv := range dels {
		if iv.contains(k) {
			return true
		}
	}
	return false
}

// keySet is a set of keys: a slice while small (no map allocation for the
// usual txn with a few puts), a map beyond that.
type keySet struct {
	list [][]byte
	m    map[string]struct{}
}

const keySetSmall = 32

func (ks *keySet) has(k []byte) bool {
	if ks.m != nil {
		_, ok := ks.m[string(k)]
		return ok
	}
	for _, x := range ks.list {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

// add adds k unless it is there already: the set must not list a key twice,
// or a caller walking it would see a duplicate write that is not one.
func (ks *keySet) add(k []byte) {
	if ks.has(k) {
		return
	}
	if ks.m == nil && len(ks.list) < keySetSmall {
		ks.list = append(ks.list, k)
		return
	}
	if ks.m == nil {
		ks.m = make(map[string]struct{}, 2*keySetSmall)
		for _, x := range ks.list {
			ks.m[string(x)] = struct{}{}
		}
		ks.list = nil
	}
	ks.m[string(k)] = struct{}{}
}

// each calls fn for every key of the set.
func (ks *keySet) each(fn func(k []byte) error) error {
	for _, x := range ks.list {
		if err := fn(x); err != nil {
			return err
		}
	}
	for x := range ks.m {
		if err := fn([]byte(x)); err != nil {
			return err
		}
	}
	return nil
}

// checkIntervals finds overlapping writes in one list of ops and returns the
// keys put and the ranges deleted by it (nested txns included) for the
// caller's own check.
func checkIntervals(reqs []*pb.RequestOp) (*keySet, []interval, error) {
	var dels []interval
	// This level's deletes come first, so nested puts are checked against them.
	for _, req := range reqs {
		if req == nil {
			continue
		}
		d := req.GetRequestDeleteRange()
		if d == nil {
			continue
		}
		dels = append(dels, interval{begin: d.Key, end: d.RangeEnd})
	}

	puts := &keySet{}
	for _, req := range reqs {
		if req == nil {
			continue
		}
		t := req.GetRequestTxn()
		if t == nil {
			continue
		}
		putsThen, delsThen, err := checkIntervals(t.Success)
		if err != nil {
			return nil, nil, err
		}
		putsElse, delsElse, err := checkIntervals(t.Failure)
		if err != nil {
			return nil, nil, err
		}
		err = putsThen.each(func(k []byte) error {
			if puts.has(k) || anyContains(dels, k) {
				return ErrDuplicateKey
			}
			puts.add(k)
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		err = putsElse.each(func(k []byte) error {
			// The branches of one txn exclude each other: a key put by both
			// is fine, a key put earlier by a sibling is not.
			if puts.has(k) && !putsThen.has(k) {
				return ErrDuplicateKey
			}
			if anyContains(dels, k) {
				return ErrDuplicateKey
			}
			puts.add(k)
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		dels = append(dels, delsThen...)
		dels = append(dels, delsElse...)
	}

	for _, req := range reqs {
		if req == nil {
			continue
		}
		p := req.GetRequestPut()
		if p == nil {
			continue
		}
		if puts.has(p.Key) || anyContains(dels, p.Key) {
			return nil, nil, ErrDuplicateKey
		}
		puts.add(p.Key)
	}
	return puts, dels, nil
}

// TxnReadOnly reports whether every op in both branches of r is a Range (no
// puts, deletes or nested txns). Such a txn never creates a revision, and
// Store.Txn may be called for it from any goroutine, like Range.
func TxnReadOnly(r *pb.TxnRequest) bool {
	if r == nil {
		return true
	}
	for _, u := range r.Success {
		if u == nil || u.GetRequestRange() == nil {
			return false
		}
	}
	for _, u := range r.Failure {
		if u == nil || u.GetRequestRange() == nil {
			return false
		}
	}
	return true
}
