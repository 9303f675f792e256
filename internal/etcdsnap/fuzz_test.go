package etcdsnap

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// checkingSink fails the test on anything Read promised not to hand out.
type checkingSink struct {
	t       *testing.T
	lastRev int64
}

func (c *checkingSink) Lease(l Lease) error { return nil }

func (c *checkingSink) KV(kv *KV) error {
	if len(kv.Key) == 0 || kv.ModRevision < 1 || kv.ModRevision < c.lastRev {
		c.t.Fatalf("Read handed out %+v after revision %d", kv, c.lastRev)
	}
	c.lastRev = kv.ModRevision
	return nil
}

// FuzzRead feeds arbitrary bytes to the reader: it must return an error or
// a result, never panic, hang or allocate beyond the input's size.
func FuzzRead(f *testing.F) {
	src := genHistory(rand.New(rand.NewPCG(1, 2)), 40, 8)
	src.compact = 10
	small := writeFile(f, src, WriteOptions{Auth: testAuth(), ConsistentIndex: 5, Term: 2}, minPageSize)
	f.Add(small[:len(small)-HashSize])
	f.Add(small)
	empty := writeFile(f, &memSource{rev: 1, compact: -1}, WriteOptions{}, minPageSize)
	f.Add(empty[:len(empty)-HashSize])
	f.Add(etcdFileF(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, skip := range []bool{true, false} {
			_, err := Read(bytes.NewReader(data), int64(len(data)), &checkingSink{t: t}, ReadOptions{SkipHashCheck: skip})
			if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrHashMismatch) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unexpected error kind: %v", err)
			}
		}
		_, _ = readerEntries(data)
	})
}

// etcdFileF is a small bbolt-made file of etcd's layout, for the corpus.
func etcdFileF(f *testing.F) []byte {
	path := tempPath(f, "db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 512})
	if err != nil {
		f.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, n := range [][]byte{bucketKey, bucketMeta, bucketLease, bucketAuth} {
			if _, err := tx.CreateBucket(n); err != nil {
				return err
			}
		}
		for i := range 30 {
			kv := KV{Key: []byte{'k', byte(i % 7)}, Value: []byte("v"), CreateRevision: int64(i + 2), ModRevision: int64(i + 2), Version: 1}
			if err := putKV(tx, int64(i+2), 0, kv); err != nil {
				return err
			}
		}
		tx.Bucket(bucketLease).Put(leaseKey(3), appendLease(nil, Lease{ID: 3, TTL: 9}))
		return tx.Bucket(bucketMeta).Put(metaFinishedCompact, appendRevKey(nil, 5, 0, false))
	})
	if err != nil {
		f.Fatal(err)
	}
	db.Close()
	return readFileF(f, path)
}
