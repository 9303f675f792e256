package backup

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshkv/meshkv/internal/etcdsnap"
	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// randomStore applies n random writes: puts with and without leases,
// deletes, nested txns that put and delete one key in one revision, lease
// grants, checkpoints and revokes, and compactions.
func randomStore(t testing.TB, seed uint64, n int) *mvcc.Store {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	s := mvcc.New()
	key := func() []byte { return fmt.Appendf(nil, "k%02d", r.IntN(40)) }
	leases := []int64{}
	for i := range n {
		var err error
		switch x := r.IntN(100); {
		case x < 55:
			p := &pb.PutRequest{Key: key(), Value: bytes.Repeat([]byte{'v'}, r.IntN(50))}
			if len(leases) > 0 && r.IntN(4) == 0 {
				p.Lease = leases[r.IntN(len(leases))]
			}
			_, err = s.Put(p)
		case x < 70:
			_, err = s.DeleteRange(&pb.DeleteRangeRequest{Key: key()})
		case x < 75:
			k := key()
			_, err = s.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{
				{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{
					{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: k, Value: []byte("tmp")}}}}}}},
				{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{
					{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: k}}}}}}},
			}})
		case x < 85:
			id := int64(i + 1)
			if r.IntN(5) == 0 {
				id = -id
			}
			if err = s.LeaseGrant(id, int64(10+r.IntN(100)), uint64(i+1)); err == nil {
				leases = append(leases, id)
			}
		case x < 88 && len(leases) > 0:
			err = s.LeaseCheckpoint(leases[r.IntN(len(leases))], int64(r.IntN(10)))
		case x < 91 && len(leases) > 0:
			j := r.IntN(len(leases))
			_, err = s.LeaseRevoke(leases[j])
			leases = append(leases[:j], leases[j+1:]...)
		case x < 95:
			if c := s.Rev() - int64(r.IntN(20)); c > s.CompactRev() {
				_, err = s.Compact(&pb.CompactionRequest{Revision: c})
			}
		}
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	return s
}

// fileOf writes the etcd snapshot file of s.
func fileOf(t testing.TB, s *mvcc.Store, opts etcdsnap.WriteOptions) []byte {
	t.Helper()
	f, err := Prepare(s.Snapshot(), opts)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		t.Fatalf("write: %v", err)
	}
	if int64(buf.Len()) != f.Size() {
		t.Fatalf("wrote %d bytes, Size says %d", buf.Len(), f.Size())
	}
	return buf.Bytes()
}

// records lists every stored version of s.
func records(t testing.TB, s *mvcc.Store) []mvcc.Record {
	t.Helper()
	var out []mvcc.Record
	err := s.Snapshot().Records(func(r *mvcc.Record) error {
		c := *r
		c.Key, c.Value = bytes.Clone(r.Key), bytes.Clone(r.Value)
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameContent fails unless got holds what want holds: every version, the
// revisions, the hash, the size and the leases with their keys. The log
// indexes of lease grants and renewals belong to the old cluster's log: a
// loaded store has none.
func sameContent(t testing.TB, got, want *mvcc.Store) {
	t.Helper()
	h1, c1, _ := want.Hash(0)
	h2, c2, _ := got.Hash(0)
	if h1 != h2 || c1 != c2 || got.Rev() != want.Rev() || got.CompactRev() != want.CompactRev() || got.Size() != want.Size() {
		t.Fatalf("hash/rev/compact/size %x/%d/%d/%d, want %x/%d/%d/%d",
			h2, got.Rev(), got.CompactRev(), got.Size(), h1, want.Rev(), want.CompactRev(), want.Size())
	}
	if g, w := records(t, got), records(t, want); !reflect.DeepEqual(g, w) {
		t.Fatalf("versions differ: %d vs %d", len(g), len(w))
	}
	if len(got.Leases()) != len(want.Leases()) {
		t.Fatalf("%d leases, want %d", len(got.Leases()), len(want.Leases()))
	}
	for _, l := range want.Leases() {
		a, _ := want.Lease(l.ID)
		b, ok := got.Lease(l.ID)
		a.GrantedAt, a.RenewedAt = 0, 0
		if !ok || !reflect.DeepEqual(a, b) {
			t.Fatalf("lease %x: %+v, want %+v", l.ID, b, a)
		}
	}
}

// A store written to an etcd snapshot and loaded back is the same store:
// every version, revision, compaction, lease (TTL, checkpoint, keys).
func TestStoreFileStore(t *testing.T) {
	for seed := range uint64(10) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			s := randomStore(t, seed, 400+int(seed)*100)
			auth := &etcdsnap.Auth{Enabled: true, Revision: 4, Users: []*authpb.User{{Name: []byte("root"), Roles: []string{"root"}}}}
			data := fileOf(t, s, etcdsnap.WriteOptions{ConsistentIndex: 9, Term: 2, Auth: auth})
			got, info, err := Load(bytes.NewReader(data), int64(len(data)), etcdsnap.ReadOptions{})
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			sameContent(t, got, s)
			if info.Auth == nil || !info.Auth.Enabled || len(info.Auth.Users) != 1 || info.ConsistentIndex != 9 || info.Term != 2 {
				t.Fatalf("info %+v auth %+v", info, info.Auth)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	s := randomStore(t, 42, 300)
	path := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(path, fileOf(t, s, etcdsnap.WriteOptions{}), 0o600); err != nil {
		t.Fatal(err)
	}
	got, _, err := LoadFile(path, etcdsnap.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameContent(t, got, s)
	if _, _, err := LoadFile(filepath.Dir(path), etcdsnap.ReadOptions{}); err == nil {
		t.Fatal("loaded a directory")
	}
	if _, _, err := LoadFile(path+".missing", etcdsnap.ReadOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// A file whose structure is sound but whose history is not (here: a key
// attached to a lease the file lacks) is refused.
func TestLoadRejectsInconsistentHistory(t *testing.T) {
	s := mvcc.New()
	if err := s.LeaseGrant(5, 10, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(&pb.PutRequest{Key: []byte("a"), Lease: 5}); err != nil {
		t.Fatal(err)
	}
	sn := s.Snapshot()
	f, err := etcdsnap.Prepare(noLeases{source{sn}}, etcdsnap.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(bytes.NewReader(buf.Bytes()), int64(buf.Len()), etcdsnap.ReadOptions{}); !errors.Is(err, mvcc.ErrCorruptSnapshot) {
		t.Fatalf("err %v, want ErrCorruptSnapshot", err)
	}
}

type noLeases struct{ source }

func (noLeases) Leases(func(etcdsnap.Lease) error) error { return nil }

// FuzzLoad: no input makes loading panic, hang or allocate beyond its size.
func FuzzLoad(f *testing.F) {
	f.Add(fileOf(f, randomStore(f, 1, 60), etcdsnap.WriteOptions{}))
	f.Add(fileOf(f, mvcc.New(), etcdsnap.WriteOptions{}))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, _, err := Load(bytes.NewReader(data), int64(len(data)), etcdsnap.ReadOptions{SkipHashCheck: true})
		if err == nil {
			// Whatever loaded is a working store.
			if _, err := st.Put(&pb.PutRequest{Key: []byte("probe")}); err != nil {
				t.Fatalf("put into a loaded store: %v", err)
			}
			if _, err := st.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}); err != nil {
				t.Fatalf("range over a loaded store: %v", err)
			}
		}
	})
}
