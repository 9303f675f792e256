package etcdsnap

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/authpb"
	"google.golang.org/protobuf/proto"
)

func testAuth() *Auth {
	return &Auth{
		Enabled:  true,
		Revision: 12,
		Users: []*authpb.User{
			{Name: []byte("root"), Password: []byte("$2a$10$hash"), Roles: []string{"root"}},
			{Name: []byte("alice"), Roles: []string{"reader", "writer"}, Options: &authpb.UserAddOptions{NoPassword: true}},
		},
		Roles: []*authpb.Role{
			{Name: []byte("root")},
			{Name: []byte("reader"), KeyPermission: []*authpb.Permission{{PermType: authpb.Permission_READ, Key: []byte("a"), RangeEnd: []byte("b")}}},
		},
	}
}

// leaseOrder is the lease bucket's order: non-negative ids, then negative.
func leaseOrder(ls []Lease) []Lease {
	out := slices.Clone(ls)
	slices.SortFunc(out, func(a, b Lease) int {
		ua, ub := uint64(a.ID), uint64(b.ID)
		if ua < ub {
			return -1
		}
		if ua > ub {
			return 1
		}
		return 0
	})
	return out
}

// Everything written reads back: versions in order (sub revisions and
// tombstones included), leases, revisions, raft position and auth.
func TestRoundTrip(t *testing.T) {
	for _, ps := range []int{writePageSize, minPageSize} {
		t.Run(fmt.Sprint(ps), func(t *testing.T) {
			src := genHistory(rand.New(rand.NewPCG(5, 6)), 3000, 150)
			src.compact = src.kvs[len(src.kvs)/2].ModRevision
			opts := WriteOptions{ConsistentIndex: 77, Term: 3, Auth: testAuth()}
			data := writeFile(t, src, opts, ps)
			var sink collectSink
			info, err := Read(bytes.NewReader(data), int64(len(data)), &sink, ReadOptions{})
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if len(sink.kvs) != len(src.kvs) {
				t.Fatalf("read %d versions, wrote %d", len(sink.kvs), len(src.kvs))
			}
			for i := range src.kvs {
				if !kvEqual(sink.kvs[i], src.kvs[i]) {
					t.Fatalf("version %d: read %+v, wrote %+v", i, sink.kvs[i], src.kvs[i])
				}
			}
			if !slices.Equal(sink.leases, leaseOrder(src.leases)) {
				t.Errorf("leases: read %v, wrote %v", sink.leases, src.leases)
			}
			want := Info{Revision: src.rev, CompactRevision: src.compact, ConsistentIndex: 77, Term: 3,
				StorageVersion: StorageVersion, HasHash: true, KVs: len(src.kvs), Leases: len(src.leases)}
			got := *info
			got.Auth = nil
			if got != want {
				t.Errorf("info = %+v, want %+v", got, want)
			}
			a := info.Auth
			if a == nil || !a.Enabled || a.Revision != 12 || len(a.Users) != 2 || len(a.Roles) != 2 {
				t.Fatalf("auth = %+v", a)
			}
			// Sorted by name, as etcd keys them.
			if string(a.Users[0].Name) != "alice" || !proto.Equal(a.Users[1], testAuth().Users[0]) ||
				!proto.Equal(a.Roles[0], testAuth().Roles[1]) {
				t.Errorf("auth users/roles differ: %v %v", a.Users, a.Roles)
			}
		})
	}
}

// A store without compaction, leases or auth writes no compaction marks and
// auth disabled, and an empty store is revision 1.
func TestRoundTripEmpty(t *testing.T) {
	data := writeFile(t, &memSource{rev: 1, compact: -1}, WriteOptions{}, writePageSize)
	var sink collectSink
	info, err := Read(bytes.NewReader(data), int64(len(data)), &sink, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != 1 || info.CompactRevision != -1 || info.Auth == nil || info.Auth.Enabled ||
		info.Auth.Revision != 1 || len(sink.kvs) != 0 || len(sink.leases) != 0 || info.ConsistentIndex != 0 {
		t.Errorf("info = %+v, auth %+v", info, info.Auth)
	}
}

// The same source writes the same bytes, every time.
func TestWriteDeterministic(t *testing.T) {
	src := genHistory(rand.New(rand.NewPCG(7, 8)), 500, 50)
	a := writeFile(t, src, WriteOptions{Auth: testAuth()}, writePageSize)
	f, err := Prepare(src, WriteOptions{Auth: testAuth()})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		var b bytes.Buffer
		if _, err := f.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b.Bytes()) {
			t.Fatal("two writes of one source differ")
		}
	}
}

func TestReadTrailer(t *testing.T) {
	src := genHistory(rand.New(rand.NewPCG(9, 10)), 100, 20)
	data := writeFile(t, src, WriteOptions{}, writePageSize)
	read := func(b []byte, opts ReadOptions) (*Info, error) {
		return Read(bytes.NewReader(b), int64(len(b)), &collectSink{}, opts)
	}
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 1
	if _, err := read(bad, ReadOptions{}); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("damaged trailer: err %v, want ErrHashMismatch", err)
	}
	if info, err := read(bad, ReadOptions{SkipHashCheck: true}); err != nil || !info.HasHash {
		t.Errorf("damaged trailer, skipped check: %v", err)
	}
	bad = bytes.Clone(data)
	bad[writePageSize*firstDataPage+100] ^= 1
	if _, err := read(bad, ReadOptions{}); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("damaged page: err %v, want ErrHashMismatch", err)
	}
	// A member's db file has no trailer.
	info, err := read(data[:len(data)-HashSize], ReadOptions{})
	if err != nil || info.HasHash || info.KVs != len(src.kvs) {
		t.Errorf("without trailer: %+v, %v", info, err)
	}
}

func TestPrepareRejectsBadSources(t *testing.T) {
	kv := func(k string, mod int64) KV {
		return KV{Key: []byte(k), CreateRevision: mod, ModRevision: mod, Version: 1}
	}
	cases := map[string]*memSource{
		"revision goes back": {kvs: []KV{kv("a", 3), kv("b", 2)}, rev: 3, compact: -1},
		"revision 0":         {kvs: []KV{kv("a", 0)}, rev: 1, compact: -1},
		"empty key":          {kvs: []KV{kv("", 2)}, rev: 2, compact: -1},
		"revision too high":  {kvs: []KV{kv("a", 2)}, rev: 5, compact: -1},
		"revision too low":   {kvs: []KV{kv("a", 6)}, rev: 5, compact: -1},
		"lease 0":            {rev: 1, compact: -1, leases: []Lease{{ID: 0, TTL: 5}}},
		"leases unsorted":    {rev: 1, compact: -1, leases: []Lease{{ID: 5, TTL: 5}, {ID: 2, TTL: 5}}},
	}
	for name, src := range cases {
		if _, err := Prepare(src, WriteOptions{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	dup := &Auth{Users: []*authpb.User{{Name: []byte("u")}, {Name: []byte("u")}}}
	if _, err := Prepare(&memSource{rev: 1, compact: -1}, WriteOptions{Auth: dup}); !errors.Is(err, ErrBadSource) {
		t.Errorf("duplicate users: %v", err)
	}
	if _, err := Prepare(&memSource{rev: 1, compact: -1}, WriteOptions{Auth: &Auth{Roles: []*authpb.Role{{}}}}); !errors.Is(err, ErrBadSource) {
		t.Errorf("nameless role: %v", err)
	}
}

// A source that changes between the passes is caught.
type growingSource struct {
	memSource
	calls int
}

func (g *growingSource) KVs(fn func(*KV) error) error {
	g.calls++
	if g.calls > 1 {
		g.kvs = append(g.kvs, KV{Key: []byte("late"), CreateRevision: g.rev, ModRevision: g.rev, Version: 1})
	}
	return g.memSource.KVs(fn)
}

func TestWriteDetectsChangedSource(t *testing.T) {
	src := genHistory(rand.New(rand.NewPCG(11, 12)), 2000, 100)
	g := &growingSource{memSource: *src}
	f, err := Prepare(g, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteTo(&bytes.Buffer{}); !errors.Is(err, ErrSourceChanged) {
		t.Fatalf("err %v, want ErrSourceChanged", err)
	}
}

// etcdFile builds a file the way etcd's backend does, through bbolt, with
// small (inline) buckets and bbolt's own page layout.
func etcdFile(t *testing.T, fill func(tx *bolt.Tx) error) []byte {
	t.Helper()
	path := tempPath(t, "db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, n := range [][]byte{bucketKey, bucketMeta, bucketLease, bucketAuth, bucketAuthUsers, bucketAuthRoles, bucketMembers, bucketCluster} {
			if _, err := tx.CreateBucket(n); err != nil {
				return err
			}
		}
		return fill(tx)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func putKV(tx *bolt.Tx, main, sub int64, kv KV) error {
	return tx.Bucket(bucketKey).Put(appendRevKey(nil, main, sub, kv.Tombstone), appendKV(nil, &kv))
}

// Files laid out by bbolt: an unfinished compaction, a bare revision mark,
// inline buckets, members that are ignored.
func TestReadEtcdLayout(t *testing.T) {
	data := etcdFile(t, func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		m.Put(metaFinishedCompact, appendRevKey(nil, 3, 0, false))
		m.Put(metaScheduledCompact, appendRevKey(nil, 4, 0, false))
		m.Put(metaStorageVersion, []byte("3.7.0"))
		m.Put([]byte("confState"), []byte(`{"voters":[1]}`))
		tx.Bucket(bucketMembers).Put([]byte("8e9e05c52164694d"), []byte(`{"id":1}`))
		tx.Bucket(bucketLease).Put(leaseKey(7), appendLease(nil, Lease{ID: 7, TTL: 60}))
		putKV(tx, 2, 0, KV{Key: []byte("a"), Value: []byte("1"), CreateRevision: 2, ModRevision: 2, Version: 1, Lease: 7})
		putKV(tx, 3, 0, KV{Key: []byte("b"), Value: []byte("2"), CreateRevision: 3, ModRevision: 3, Version: 1})
		putKV(tx, 3, 1, KV{Key: []byte("b"), Tombstone: true})
		tx.Bucket(bucketKey).Put(appendRevKey(nil, 9, 0, false), nil) // revision mark
		return nil
	})
	var sink collectSink
	info, err := Read(bytes.NewReader(data), int64(len(data)), &sink, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != 9 || info.CompactRevision != 4 || info.StorageVersion != "3.7.0" || info.HasHash || info.KVs != 3 {
		t.Errorf("info = %+v", info)
	}
	if len(sink.kvs) != 3 || !sink.kvs[2].Tombstone || sink.kvs[2].ModRevision != 3 || sink.kvs[0].Lease != 7 {
		t.Errorf("kvs = %+v", sink.kvs)
	}
	if len(sink.leases) != 1 || sink.leases[0] != (Lease{ID: 7, TTL: 60}) {
		t.Errorf("leases = %+v", sink.leases)
	}
}

func TestReadRejectsBadEtcdContent(t *testing.T) {
	cases := map[string]func(tx *bolt.Tx) error{
		"no key bucket": func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketKey) },
		"mod mismatch": func(tx *bolt.Tx) error {
			return putKV(tx, 2, 0, KV{Key: []byte("a"), CreateRevision: 2, ModRevision: 3, Version: 1})
		},
		"bad revision key": func(tx *bolt.Tx) error { return tx.Bucket(bucketKey).Put([]byte("abc"), nil) },
		"revision 0": func(tx *bolt.Tx) error {
			return putKV(tx, 0, 0, KV{Key: []byte("a"), Version: 1})
		},
		"one revision twice": func(tx *bolt.Tx) error {
			putKV(tx, 2, 0, KV{Key: []byte("a"), CreateRevision: 2, ModRevision: 2, Version: 1})
			return putKV(tx, 2, 0, KV{Key: []byte("a"), Tombstone: true})
		},
		"garbage value": func(tx *bolt.Tx) error {
			return tx.Bucket(bucketKey).Put(appendRevKey(nil, 2, 0, false), []byte{0x0a, 0x7f})
		},
		"lease id mismatch": func(tx *bolt.Tx) error {
			return tx.Bucket(bucketLease).Put(leaseKey(7), appendLease(nil, Lease{ID: 8, TTL: 1}))
		},
		"short consistent index": func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaConsistentIndex, []byte{1}) },
		"bad compact rev":        func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaFinishedCompact, []byte("x")) },
		"bad storage version":    func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaStorageVersion, []byte("three")) },
		"user under other name": func(tx *bolt.Tx) error {
			b, _ := proto.Marshal(&authpb.User{Name: []byte("bob")})
			return tx.Bucket(bucketAuthUsers).Put([]byte("alice"), b)
		},
		"undecodable role": func(tx *bolt.Tx) error { return tx.Bucket(bucketAuthRoles).Put([]byte("r"), []byte{0xff}) },
	}
	for name, fill := range cases {
		t.Run(name, func(t *testing.T) {
			data := etcdFile(t, fill)
			if _, err := Read(bytes.NewReader(data), int64(len(data)), &collectSink{}, ReadOptions{}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err %v, want ErrCorrupt", err)
			}
		})
	}
	data := etcdFile(t, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaStorageVersion, []byte("4.0.0")) })
	if _, err := Read(bytes.NewReader(data), int64(len(data)), &collectSink{}, ReadOptions{}); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("storage version 4.0.0: err %v", err)
	}
}

type failingSink struct{ collectSink }

var errSinkFull = errors.New("sink full")

func (f *failingSink) KV(kv *KV) error {
	if len(f.kvs) == 10 {
		return errSinkFull
	}
	return f.collectSink.KV(kv)
}

func TestReadReturnsSinkErrors(t *testing.T) {
	data := writeFile(t, genHistory(rand.New(rand.NewPCG(1, 1)), 100, 10), WriteOptions{}, writePageSize)
	if _, err := Read(bytes.NewReader(data), int64(len(data)), &failingSink{}, ReadOptions{}); !errors.Is(err, errSinkFull) {
		t.Fatalf("err %v, want the sink's", err)
	}
}
