package etcdsnap

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// specsOf turns sorted bucket contents into bucket specs.
func specsOf(content map[string][][2]string) []bucketSpec {
	var names []string
	for n := range content {
		names = append(names, n)
	}
	slices.Sort(names)
	var specs []bucketSpec
	for _, n := range names {
		pairs := content[n]
		specs = append(specs, bucketSpec{name: []byte(n), each: func(yield func(k, v []byte) error) error {
			for _, p := range pairs {
				if err := yield([]byte(p[0]), []byte(p[1])); err != nil {
					return err
				}
			}
			return nil
		}})
	}
	return specs
}

// buildBolt writes content with the streaming writer.
func buildBolt(t *testing.T, content map[string][][2]string, pageSize int) []byte {
	t.Helper()
	specs := specsOf(content)
	p, err := planBolt(specs, pageSize)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	var buf bytes.Buffer
	if err := writeBolt(&buf, p, specs); err != nil {
		t.Fatalf("write: %v", err)
	}
	if int64(buf.Len()) != p.size() {
		t.Fatalf("wrote %d bytes, planned %d", buf.Len(), p.size())
	}
	return buf.Bytes()
}

func pairs(n int, key func(i int) string, val func(i int) string) [][2]string {
	out := make([][2]string, n)
	for i := range n {
		out[i] = [2]string{key(i), val(i)}
	}
	slices.SortFunc(out, func(a, b [2]string) int { return bytes.Compare([]byte(a[0]), []byte(b[0])) })
	return out
}

// The writer's files open in bbolt, pass its consistency check, read back
// identically through bbolt and through the reader, and take further writes.
func TestBoltWriterOutputIsValidBbolt(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cases := map[string]map[string][][2]string{
		"empty buckets": {"a": {}, "b": {}},
		"one entry":     {"k": {{"x", "y"}}},
		"many small": {
			"big": pairs(50_000, func(i int) string { return fmt.Sprintf("%08d", i) }, func(i int) string { return fmt.Sprint(i) }),
			"z":   {{"only", ""}},
		},
		"overflowing values": {
			"v": pairs(300, func(i int) string { return fmt.Sprintf("%05d", i) }, func(i int) string {
				return string(bytes.Repeat([]byte{'v'}, r.IntN(20_000)))
			}),
		},
		"overflowing keys": {
			"k": pairs(200, func(i int) string {
				return fmt.Sprintf("%05d", i) + string(bytes.Repeat([]byte{'k'}, r.IntN(9_000)))
			}, func(i int) string { return "v" }),
		},
		"deep tree": {
			"d": pairs(200_000, func(i int) string { return fmt.Sprintf("%040d", i*7) }, func(int) string { return "" }),
		},
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			for _, ps := range []int{4096, 1024} {
				data := buildBolt(t, content, ps)
				got, err := readerEntries(data)
				if err != nil {
					t.Fatalf("page size %d: reader: %v", ps, err)
				}
				if !reflect.DeepEqual(got, content) {
					t.Fatalf("page size %d: reader got other content", ps)
				}
				path := tempPath(t, "db")
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				if got := boltEntries(t, path); !reflect.DeepEqual(got, content) {
					t.Fatalf("page size %d: bbolt read other content", ps)
				}
				// bbolt can modify the file (etcdutl restore does).
				db, err := bolt.Open(path, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				err = db.Update(func(tx *bolt.Tx) error {
					for n := range content {
						b := tx.Bucket([]byte(n))
						for i := range 2000 {
							if err := b.Put(fmt.Appendf(nil, "%06d-new", r.IntN(100_000)), []byte("x")); err != nil {
								return err
							}
							if i%3 == 0 && len(content[n]) > 0 {
								if err := b.Delete([]byte(content[n][r.IntN(len(content[n]))][0])); err != nil {
									return err
								}
							}
						}
					}
					for e := range tx.Check() {
						return e
					}
					return nil
				})
				db.Close()
				if err != nil {
					t.Fatalf("page size %d: modify: %v", ps, err)
				}
			}
		})
	}
}

// The reader reads what bbolt writes: inline and regular buckets, pages
// freed and reused over many transactions, several page sizes.
func TestReaderReadsBboltFiles(t *testing.T) {
	for _, ps := range []int{1024, 4096, 16384} {
		t.Run(fmt.Sprint(ps), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(ps), 9))
			path := tempPath(t, "db")
			db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: ps})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]map[string]string{"tiny": {}, "empty": {}, "big": {}, "mixed": {}}
			for round := range 20 {
				err := db.Update(func(tx *bolt.Tx) error {
					for name, m := range want {
						b, err := tx.CreateBucketIfNotExists([]byte(name))
						if err != nil {
							return err
						}
						n := map[string]int{"tiny": 1, "empty": 0, "big": 2000, "mixed": 200}[name]
						for range n {
							k := fmt.Sprintf("%05d", r.IntN(10*n+10))
							v := string(bytes.Repeat([]byte{'x'}, r.IntN(3*ps)*round%7))
							if r.IntN(3) == 0 {
								delete(m, k)
								if err := b.Delete([]byte(k)); err != nil {
									return err
								}
								continue
							}
							m[k] = v
							if err := b.Put([]byte(k), []byte(v)); err != nil {
								return err
							}
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			db.Close()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := readerEntries(data)
			if err != nil {
				t.Fatalf("reader: %v", err)
			}
			for name, m := range want {
				if w := sortedPairs(m); !reflect.DeepEqual(got[name], w) {
					t.Errorf("bucket %s: got %d entries, want %d", name, len(got[name]), len(w))
				}
			}
		})
	}
}

// Hostile page headers are refused before anything is allocated for them.
func TestReaderRejectsBadPages(t *testing.T) {
	content := map[string][][2]string{"b": pairs(500, func(i int) string { return fmt.Sprintf("%05d", i) }, func(int) string { return "v" })}
	good := buildBolt(t, content, 1024)
	mutate := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	const ps = 1024
	page3 := 3 * ps
	cases := map[string][]byte{
		"huge overflow":     mutate(func(b []byte) { le.PutUint32(b[page3+12:], 0xFFFFFFFF) }),
		"wrong page id":     mutate(func(b []byte) { le.PutUint64(b[page3:], 77) }),
		"meta page flags":   mutate(func(b []byte) { le.PutUint16(b[page3+8:], metaPageFlag) }),
		"element past page": mutate(func(b []byte) { le.PutUint32(b[page3+pageHeaderSize+4:], 0x7FFFFFFF) }),
		"too many elements": mutate(func(b []byte) { le.PutUint16(b[page3+10:], 0xFFFF) }),
		"truncated":         good[:len(good)-ps],
		"no meta":           make([]byte, 8*ps),
		"short":             good[:100],
		"keys out of order": mutate(func(b []byte) {
			count := int(le.Uint16(b[page3+10:]))
			b[page3+pageHeaderSize+count*elemSize] = '9' // the first key, "00000"
		}),
		"child is meta page": nil,
	}
	// A branch pointing at page 0: find the root of bucket b (a branch).
	br, err := openBolt(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	bs, err := br.buckets(map[string]bool{"b": true})
	if err != nil {
		t.Fatal(err)
	}
	root := int(bs["b"].root) * ps
	if le.Uint16(good[root+8:]) != branchPageFlag {
		t.Fatal("test expects bucket b's root to be a branch")
	}
	cases["child is meta page"] = mutate(func(b []byte) { le.PutUint64(b[root+pageHeaderSize+8:], 0) })
	cases["child twice"] = mutate(func(b []byte) {
		le.PutUint64(b[root+pageHeaderSize+8:], le.Uint64(b[root+pageHeaderSize+elemSize+8:]))
	})
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := readerEntries(data); err == nil {
				t.Fatal("reader accepted a corrupt file")
			}
		})
	}
}
