package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// kv is a compact, comparable view of a KeyValue.
type kv struct {
	K, V                string
	Create, Mod, Ver, L int64
}

func (k kv) String() string {
	return fmt.Sprintf("%s=%s(c%d,m%d,v%d,l%d)", k.K, k.V, k.Create, k.Mod, k.Ver, k.L)
}

func toKV(x *mvccpb.KeyValue) kv {
	if x == nil {
		return kv{}
	}
	return kv{K: string(x.Key), V: string(x.Value), Create: x.CreateRevision, Mod: x.ModRevision, Ver: x.Version, L: x.Lease}
}

func toKVs(xs []*mvccpb.KeyValue) []kv {
	out := []kv{}
	for _, x := range xs {
		out = append(out, toKV(x))
	}
	return out
}

func kvsString(xs []kv) string {
	var b strings.Builder
	for i, x := range xs {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(x.String())
	}
	return b.String()
}

func keysOf(xs []*mvccpb.KeyValue) string {
	var ks []string
	for _, x := range xs {
		ks = append(ks, string(x.Key))
	}
	return strings.Join(ks, ",")
}

// putReq builds a put request; opts adjust it.
func putReq(k, v string, opts ...func(*pb.PutRequest)) *pb.PutRequest {
	r := &pb.PutRequest{Key: []byte(k), Value: []byte(v)}
	for _, o := range opts {
		o(r)
	}
	return r
}

func withLease(id int64) func(*pb.PutRequest) { return func(r *pb.PutRequest) { r.Lease = id } }
func withPrevKV() func(*pb.PutRequest)        { return func(r *pb.PutRequest) { r.PrevKv = true } }
func ignoreValue() func(*pb.PutRequest) {
	return func(r *pb.PutRequest) { r.IgnoreValue = true; r.Value = nil }
}
func ignoreLease() func(*pb.PutRequest)  { return func(r *pb.PutRequest) { r.IgnoreLease = true } }
func rng(k, end string) *pb.RangeRequest { return &pb.RangeRequest{Key: []byte(k), RangeEnd: bs(end)} }
func delReq(k, end string) *pb.DeleteRangeRequest {
	return &pb.DeleteRangeRequest{Key: []byte(k), RangeEnd: bs(end)}
}

// bs returns nil for "" so that requests look like decoded protobufs.
func bs(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

func mustPut(t *testing.T, s *Store, k, v string, opts ...func(*pb.PutRequest)) *pb.PutResponse {
	t.Helper()
	resp, err := s.Put(putReq(k, v, opts...))
	if err != nil {
		t.Fatalf("Put(%q): %v", k, err)
	}
	return resp
}

func mustDel(t *testing.T, s *Store, k, end string) *pb.DeleteRangeResponse {
	t.Helper()
	resp, err := s.DeleteRange(delReq(k, end))
	if err != nil {
		t.Fatalf("DeleteRange(%q,%q): %v", k, end, err)
	}
	return resp
}

func mustRange(t *testing.T, s *Store, r *pb.RangeRequest) *pb.RangeResponse {
	t.Helper()
	resp, err := s.Range(r)
	if err != nil {
		t.Fatalf("Range(%q,%q): %v", r.Key, r.RangeEnd, err)
	}
	return resp
}

func mustTxn(t *testing.T, s *Store, r *pb.TxnRequest) *pb.TxnResponse {
	t.Helper()
	resp, err := s.Txn(r)
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	return resp
}

func mustCompact(t *testing.T, s *Store, rev int64) {
	t.Helper()
	if _, err := s.Compact(&pb.CompactionRequest{Revision: rev}); err != nil {
		t.Fatalf("Compact(%d): %v", rev, err)
	}
}

// getKV returns the key at rev (0 = current), or nil.
func getKV(t *testing.T, s *Store, k string, rev int64) *mvccpb.KeyValue {
	t.Helper()
	resp := mustRange(t, s, &pb.RangeRequest{Key: []byte(k), Revision: rev})
	if len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0]
}

func wantErr(t *testing.T, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("error = %v, want %v", got, want)
	}
}

func wantRev(t *testing.T, s *Store, want int64) {
	t.Helper()
	if got := s.Rev(); got != want {
		t.Fatalf("Rev() = %d, want %d", got, want)
	}
}

// Txn op and compare builders.
func opPut(k, v string, opts ...func(*pb.PutRequest)) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: putReq(k, v, opts...)}}
}
func opGet(k, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: rng(k, end)}}
}
func opRange(r *pb.RangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
}
func opDel(k, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: delReq(k, end)}}
}
func opTxn(t *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
}
func ops(o ...*pb.RequestOp) []*pb.RequestOp { return o }

func cmpValue(k string, res pb.Compare_CompareResult, v string) *pb.Compare {
	return &pb.Compare{Key: []byte(k), Target: pb.Compare_VALUE, Result: res, TargetUnion: &pb.Compare_Value{Value: []byte(v)}}
}
func cmpVersion(k string, res pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(k), Target: pb.Compare_VERSION, Result: res, TargetUnion: &pb.Compare_Version{Version: v}}
}
func cmpCreate(k string, res pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(k), Target: pb.Compare_CREATE, Result: res, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: v}}
}
func cmpMod(k string, res pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(k), Target: pb.Compare_MOD, Result: res, TargetUnion: &pb.Compare_ModRevision{ModRevision: v}}
}
func cmpLease(k string, res pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(k), Target: pb.Compare_LEASE, Result: res, TargetUnion: &pb.Compare_Lease{Lease: v}}
}

// checkInvariants verifies the internal structures agree with each other.
func checkInvariants(t *testing.T, s *Store) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	compact := s.compact.Load()
	var size int64
	nLog := 0
	leased := 0
	var keys int64
	s.heads.Scan(func(h *ver) bool {
		if live(h) {
			keys++
		}
		hs, _ := s.hists.Get(hist{key: h.key})
		all := append(append([]*ver{}, hs.vers...), h)
		for i, v := range all {
			size += verSize(v)
			if !bytes.Equal(v.key, h.key) {
				t.Errorf("key %q: version with key %q", h.key, v.key)
			}
			if i > 0 && v.mod < all[i-1].mod {
				t.Errorf("key %q: versions out of order", h.key)
			}
			if v.mod >= compact {
				nLog++
			}
		}
		if all[0].mod < compact && all[0].tomb() {
			t.Errorf("key %q: tombstone %d below compact revision %d kept", h.key, all[0].mod, compact)
		}
		if len(all) > 1 && all[1].mod <= compact {
			t.Errorf("key %q: two versions at or below compact revision %d", h.key, compact)
		}
		if live(h) && h.lease != 0 {
			leased++
			if _, ok := s.leaseKeys.Get(leaseKey{id: h.lease, key: h.key}); !ok {
				t.Errorf("key %q: lease %d attachment missing", h.key, h.lease)
			}
		}
		return true
	})
	s.hists.Scan(func(hs hist) bool {
		if len(hs.vers) == 0 {
			t.Errorf("key %q: empty history kept", hs.key)
		}
		p := &ver{key: hs.key}
		if _, ok := s.heads.Get(p); !ok {
			t.Errorf("key %q: history without head", hs.key)
		}
		return true
	})
	if s.leaseKeys.Len() != leased {
		t.Errorf("lease attachments = %d, want %d", s.leaseKeys.Len(), leased)
	}
	if len(s.log) != nLog {
		t.Errorf("log has %d versions, want %d", len(s.log), nLog)
	}
	for i := 1; i < len(s.log); i++ {
		if s.log[i].mod < s.log[i-1].mod {
			t.Errorf("log out of order at %d", i)
		}
	}
	if got := s.keys.Load(); got != keys {
		t.Errorf("Keys() = %d, want %d", got, keys)
	}
	size += int64(s.leases.Len()) * leaseOverhead
	if got := s.size.Load(); got != size {
		t.Errorf("Size() = %d, want %d", got, size)
	}
}

// snapshotBytes serializes the store's current state.
func snapshotBytes(t *testing.T, s *Store) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&b); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	return b.Bytes()
}
