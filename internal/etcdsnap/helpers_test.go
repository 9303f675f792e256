package etcdsnap

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// memSource is a Source over slices.
type memSource struct {
	kvs     []KV
	leases  []Lease // ascending id
	rev     int64
	compact int64
}

func (m *memSource) Revision() int64        { return m.rev }
func (m *memSource) CompactRevision() int64 { return m.compact }

func (m *memSource) KVs(fn func(*KV) error) error {
	for i := range m.kvs {
		kv := m.kvs[i]
		if err := fn(&kv); err != nil {
			return err
		}
	}
	return nil
}

func (m *memSource) Leases(fn func(Lease) error) error {
	for _, l := range m.leases {
		if err := fn(l); err != nil {
			return err
		}
	}
	return nil
}

// collectSink keeps what Read hands it.
type collectSink struct {
	kvs    []KV
	leases []Lease
}

func (c *collectSink) Lease(l Lease) error {
	c.leases = append(c.leases, l)
	return nil
}

func (c *collectSink) KV(kv *KV) error {
	x := *kv
	x.Key = bytes.Clone(kv.Key)
	x.Value = bytes.Clone(kv.Value)
	c.kvs = append(c.kvs, x)
	return nil
}

// genHistory returns a random but well-formed history of n writes over keys
// keys, a few of them in shared revisions, with leases.
func genHistory(r *rand.Rand, n, keys int) *memSource {
	type state struct{ create, ver, lease int64 }
	live := map[string]*state{}
	m := &memSource{compact: -1}
	m.leases = []Lease{{ID: -5, TTL: 30}, {ID: 1, TTL: 10, RemainingTTL: 7}, {ID: 1 << 40, TTL: 600}}
	rev := int64(1)
	for range n {
		rev++
		ops := 1
		if r.IntN(8) == 0 {
			ops = 1 + r.IntN(4)
		}
		used := map[string]bool{}
		for range ops {
			k := fmt.Sprintf("key/%04d", r.IntN(keys))
			if used[k] {
				continue
			}
			used[k] = true
			st := live[k]
			if st != nil && r.IntN(4) == 0 {
				m.kvs = append(m.kvs, KV{Key: []byte(k), ModRevision: rev, Tombstone: true})
				delete(live, k)
				continue
			}
			if st == nil {
				st = &state{create: rev}
				live[k] = st
			}
			st.ver++
			st.lease = 0
			if r.IntN(5) == 0 {
				st.lease = m.leases[r.IntN(len(m.leases))].ID
			}
			val := bytes.Repeat([]byte{byte('a' + r.IntN(26))}, r.IntN(40))
			m.kvs = append(m.kvs, KV{Key: []byte(k), Value: val, CreateRevision: st.create, ModRevision: rev, Version: st.ver, Lease: st.lease})
		}
	}
	m.rev = rev
	return m
}

// writeFile prepares and writes src with the given page size.
func writeFile(t testing.TB, src Source, opts WriteOptions, pageSize int) []byte {
	t.Helper()
	f, err := prepare(src, opts, pageSize)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	var buf bytes.Buffer
	n, err := f.WriteTo(&buf)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	if n != f.Size() || int64(buf.Len()) != f.Size() {
		t.Fatalf("wrote %d bytes (buffer %d), Size says %d", n, buf.Len(), f.Size())
	}
	return buf.Bytes()
}

// boltEntries lists a bucket's entries as read by bbolt itself.
func boltEntries(t testing.TB, path string) map[string][][2]string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("bbolt open: %v", err)
	}
	defer db.Close()
	out := map[string][][2]string{}
	err = db.View(func(tx *bolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			errs = append(errs, e)
		}
		if len(errs) > 0 {
			return fmt.Errorf("bbolt check: %v", errs)
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			out[string(name)] = [][2]string{}
			return b.ForEach(func(k, v []byte) error {
				out[string(name)] = append(out[string(name)], [2]string{string(k), string(v)})
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readerEntries lists every bucket's entries as read by boltReader.
func readerEntries(data []byte) (map[string][][2]string, error) {
	br, err := openBolt(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, err
	}
	var names []string
	err = br.each(bucketRef{root: br.root}, func(flags uint32, k, v []byte) error {
		names = append(names, string(k))
		return nil
	})
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	// A fresh reader: the first walk marked the root's pages as seen.
	br, _ = openBolt(bytes.NewReader(data), int64(len(data)))
	bs, err := br.buckets(want)
	if err != nil {
		return nil, err
	}
	out := map[string][][2]string{}
	for _, n := range names {
		out[n] = [][2]string{}
		err := br.each(bs[n], func(flags uint32, k, v []byte) error {
			out[n] = append(out[n], [2]string{string(k), string(v)})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", n, err)
		}
	}
	return out, nil
}

// tempPath is a file name in a fresh temporary directory.
func tempPath(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(t.TempDir(), name)
}

// sortedKVs returns kvs' bucket entries sorted by key.
func sortedPairs(m map[string]string) [][2]string {
	out := make([][2]string, 0, len(m))
	for k, v := range m {
		out = append(out, [2]string{k, v})
	}
	slices.SortFunc(out, func(a, b [2]string) int { return bytes.Compare([]byte(a[0]), []byte(b[0])) })
	return out
}

// readFileF reads a file or fails the test.
func readFileF(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
