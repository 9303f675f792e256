package mvcc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"reflect"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// richStore builds a store with every kind of state: leases with keys and
// checkpoints, overwritten, deleted and recreated keys, a put and delete of
// one key in one revision, and a compaction that leaves base versions, a
// tombstone at the compact revision and history above it.
func richStore(t *testing.T) *Store {
	t.Helper()
	s := New()
	for _, id := range []int64{5, -3, 9} {
		if err := s.LeaseGrant(id, 60, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.LeaseCheckpoint(9, 17); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		k := fmt.Sprint("k", i%6)
		switch {
		case i%9 == 4:
			mustDel(t, s, k, "")
		case i%11 == 7:
			mustTxn(t, s, &pb.TxnRequest{Success: ops(
				opTxn(&pb.TxnRequest{Success: ops(opPut(k, "tmp"))}),
				opTxn(&pb.TxnRequest{Success: ops(opDel(k, ""))}),
			)})
		case i%5 == 0:
			mustPut(t, s, k, fmt.Sprint("v", i), withLease(5))
		case i%7 == 0:
			mustPut(t, s, k, fmt.Sprint("v", i), withLease(-3))
		default:
			mustPut(t, s, k, fmt.Sprint("v", i))
		}
	}
	mustPut(t, s, "base-only", "old")
	mustPut(t, s, "empty", "")
	mustCompact(t, s, s.Rev()-15)
	mustDel(t, s, "k1", "")
	mustPut(t, s, "k2", "after", withLease(9))
	return s
}

// sameStore fails unless b answers every read exactly as a.
func sameStore(t *testing.T, a, b *Store) {
	t.Helper()
	if a.Rev() != b.Rev() || a.CompactRev() != b.CompactRev() || a.Size() != b.Size() {
		t.Fatalf("rev/compact/size: %d/%d/%d vs %d/%d/%d", a.Rev(), a.CompactRev(), a.Size(), b.Rev(), b.CompactRev(), b.Size())
	}
	if !reflect.DeepEqual(a.Leases(), b.Leases()) {
		t.Fatalf("leases %v vs %v", a.Leases(), b.Leases())
	}
	for _, l := range a.Leases() {
		la, _ := a.Lease(l.ID)
		lb, _ := b.Lease(l.ID)
		if !reflect.DeepEqual(la, lb) {
			t.Fatalf("lease %d: %v vs %v", l.ID, la, lb)
		}
	}
	for rev := int64(0); rev <= a.Rev()+1; rev++ {
		for _, r := range []*pb.RangeRequest{
			{Key: []byte("\x00"), RangeEnd: []byte("\x00"), Revision: rev},
			{Key: []byte("k2"), Revision: rev},
			{Key: []byte("k"), RangeEnd: []byte("l"), Revision: rev, SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_MOD, Limit: 2},
			{Key: []byte("\x00"), RangeEnd: []byte("\x00"), Revision: rev, CountOnly: true},
		} {
			ra, ea := a.Range(r)
			rb, eb := b.Range(r)
			if ea != eb || !reflect.DeepEqual(ra, rb) {
				t.Fatalf("range %v at %d:\n%v %v\n%v %v", r, rev, ra, ea, rb, eb)
			}
		}
		ha, ca, ea := a.Hash(rev)
		hb, cb, eb := b.Hash(rev)
		if ha != hb || ca != cb || ea != eb {
			t.Fatalf("hash at %d: %x %d %v vs %x %d %v", rev, ha, ca, ea, hb, cb, eb)
		}
	}
	from := a.CompactRev()
	if ha, hb := history(t, a, from, 0), history(t, b, from, 0); !reflect.DeepEqual(ha, hb) {
		t.Fatalf("history differs:\n%v\n%v", ha, hb)
	}
	if !bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, b)) {
		t.Fatal("snapshots differ")
	}
	checkInvariants(t, b)
}

func restored(t *testing.T, data []byte) *Store {
	t.Helper()
	s := New()
	mustPut(t, s, "junk", "to be replaced")
	if err := s.Restore(bytes.NewReader(data)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return s
}

func TestSnapshotRoundTrip(t *testing.T) {
	for name, mk := range map[string]func(t *testing.T) *Store{
		"empty":          func(*testing.T) *Store { return New() },
		"rich":           richStore,
		"compact 0":      func(t *testing.T) *Store { s := New(); mustCompact(t, s, 0); return s },
		"compact at rev": func(t *testing.T) *Store { s := richStore(t); mustCompact(t, s, s.Rev()); return s },
	} {
		t.Run(name, func(t *testing.T) {
			s := mk(t)
			sn := s.Snapshot()
			if sn.Rev() != s.Rev() {
				t.Fatalf("snapshot rev %d, want %d", sn.Rev(), s.Rev())
			}
			var buf bytes.Buffer
			n, err := sn.WriteTo(&buf)
			if err != nil || n != int64(buf.Len()) {
				t.Fatalf("WriteTo = %d, %v (wrote %d)", n, err, buf.Len())
			}
			r := restored(t, buf.Bytes())
			sameStore(t, s, r)
			// Both keep working identically.
			for _, st := range []*Store{s, r} {
				mustPut(t, st, "k3", "next")
				mustDel(t, st, "k4", "")
				if st.CompactRev() < st.Rev()-1 {
					mustCompact(t, st, st.Rev()-1)
				}
			}
			sameStore(t, s, r)
		})
	}
}

// A snapshot keeps the state of its moment while the store moves on.
func TestSnapshotIsolation(t *testing.T) {
	s := richStore(t)
	want := snapshotBytes(t, s)
	sn := s.Snapshot()
	for i := range 200 {
		mustPut(t, s, fmt.Sprint("k", i%9), fmt.Sprint("later", i))
		if i%50 == 0 {
			mustCompact(t, s, s.Rev()-3)
		}
	}
	if _, err := s.LeaseRevoke(5); err != nil {
		t.Fatal(err)
	}
	if err := s.LeaseCheckpoint(9, 1); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatal("snapshot changed after later writes")
	}
}

type failWriter struct{ after int }

var errWrite = errors.New("disk full")

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errWrite
	}
	n := min(len(p), w.after)
	w.after -= n
	if n < len(p) {
		return n, errWrite
	}
	return n, nil
}

func TestSnapshotWriteError(t *testing.T) {
	s := richStore(t)
	_, err := s.Snapshot().WriteTo(&failWriter{after: 100})
	if !errors.Is(err, errWrite) {
		t.Fatalf("WriteTo = %v", err)
	}
}

func TestRestoreRejectsCorruptInput(t *testing.T) {
	s := richStore(t)
	good := snapshotBytes(t, s)
	target := richStore(t)
	mustPut(t, target, "marker", "1")
	before := snapshotBytes(t, target)

	try := func(name string, data []byte) {
		t.Helper()
		err := target.Restore(bytes.NewReader(data))
		if err == nil {
			t.Fatalf("%s: Restore accepted corrupt input", name)
		}
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("%s: error %v does not wrap ErrCorruptSnapshot", name, err)
		}
	}
	try("empty", nil)
	try("garbage", []byte("hello, this is not a snapshot at all"))
	for n := 0; n < len(good); n += max(1, len(good)/300) {
		try(fmt.Sprint("truncated at ", n), good[:n])
	}
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x5a
		try(fmt.Sprint("byte ", i, " flipped"), bad)
	}
	if !bytes.Equal(snapshotBytes(t, target), before) {
		t.Fatal("failed restores changed the store")
	}
}

// reSeal replaces the checksum of a snapshot body (everything before the
// last 4 bytes).
func reSeal(body []byte) []byte {
	out := bytes.Clone(body)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(body, crcTable()))
}

func TestRestoreRejectsInconsistentInput(t *testing.T) {
	build := func(rev, compact int64, recs ...[]byte) []byte {
		b := []byte(snapMagic)
		b = binary.AppendVarint(b, rev)
		b = binary.AppendVarint(b, compact)
		for _, r := range recs {
			b = append(b, r...)
		}
		b = append(b, tagEnd)
		return reSeal(b)
	}
	version := func(tag byte, key, value string, mod, create, ver, lease int64) []byte {
		b := []byte{tag}
		b = binary.AppendUvarint(b, uint64(len(key)))
		b = append(b, key...)
		b = binary.AppendUvarint(b, uint64(len(value)))
		b = append(b, value...)
		for _, x := range []int64{mod, create, ver, lease} {
			b = binary.AppendVarint(b, x)
		}
		return b
	}
	lease := func(id, ttl, rem int64, idx ...int64) []byte {
		b := []byte{tagLease}
		granted, renewed := int64(0), int64(0)
		if len(idx) == 2 {
			granted, renewed = idx[0], idx[1]
		}
		for _, x := range []int64{id, ttl, rem, granted, renewed} {
			b = binary.AppendVarint(b, x)
		}
		return b
	}
	ok := build(3, -1, lease(1, 10, 0), version(tagEvent, "a", "1", 2, 2, 1, 1), version(tagEvent, "b", "1", 3, 3, 1, 0))
	s := New()
	if err := s.Restore(bytes.NewReader(ok)); err != nil {
		t.Fatalf("valid hand-built snapshot rejected: %v", err)
	}
	tests := map[string][]byte{
		"rev 0":                    build(0, -1),
		"compact above rev":        build(3, 4),
		"compact below -1":         build(3, -2),
		"unknown lease on key":     build(3, -1, version(tagEvent, "a", "1", 2, 2, 1, 7)),
		"leases out of order":      build(3, -1, lease(2, 1, 0), lease(1, 1, 0)),
		"lease id 0":               build(3, -1, lease(0, 1, 0)),
		"negative checkpoint":      build(3, -1, lease(1, 1, -5)),
		"negative grant index":     build(3, -1, lease(1, 1, 0, -1, 0)),
		"negative renewal index":   build(3, -1, lease(1, 1, 0, 0, -7)),
		"lease after events":       build(3, -1, version(tagEvent, "a", "1", 2, 2, 1, 0), lease(1, 1, 0)),
		"base after events":        build(5, 4, version(tagEvent, "a", "1", 4, 4, 1, 0), version(tagBase, "b", "1", 2, 2, 1, 0)),
		"base keys out of order":   build(5, 4, version(tagBase, "b", "1", 2, 2, 1, 0), version(tagBase, "a", "1", 3, 3, 1, 0)),
		"base at compact revision": build(5, 4, version(tagBase, "b", "1", 4, 4, 1, 0)),
		"base tombstone":           build(5, 4, version(tagBase, "b", "", 2, 0, 0, 0)),
		"event below compact":      build(5, 4, version(tagEvent, "b", "1", 3, 3, 1, 0)),
		"event above rev":          build(3, -1, version(tagEvent, "b", "1", 4, 4, 1, 0)),
		"events out of order":      build(5, -1, version(tagEvent, "b", "1", 3, 3, 1, 0), version(tagEvent, "c", "1", 2, 2, 1, 0)),
		"empty key":                build(3, -1, version(tagEvent, "", "1", 2, 2, 1, 0)),
		"tombstone with value":     build(3, -1, version(tagEvent, "a", "x", 2, 0, 0, 0)),
		"create above mod":         build(3, -1, version(tagEvent, "a", "x", 2, 3, 1, 0)),
		"negative version":         build(3, -1, version(tagEvent, "a", "x", 2, 2, -1, 0)),
		"unknown tag":              build(3, -1, []byte{'q'}),
		"huge key length":          build(3, -1, append([]byte{tagEvent}, binary.AppendUvarint(nil, 1<<40)...)),
		"overlong varint":          reSeal(append([]byte(snapMagic), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			err := s.Restore(bytes.NewReader(data))
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore = %v, want ErrCorruptSnapshot", err)
			}
		})
	}
	if got := keysOf(mustRange(t, s, rng("\x00", "\x00")).Kvs); got != "a,b" {
		t.Fatalf("store changed by rejected restores: %s", got)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestRestoreReaderError(t *testing.T) {
	boom := errors.New("connection reset")
	s := New()
	err := s.Restore(io.MultiReader(bytes.NewReader([]byte(snapMagic)), errReader{boom}))
	if !errors.Is(err, boom) || errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("Restore = %v", err)
	}
}

// Large values go through the chunked reader.
func TestSnapshotLargeValue(t *testing.T) {
	s := New()
	big := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16+5)
	if _, err := s.Put(&pb.PutRequest{Key: []byte("big"), Value: big}); err != nil {
		t.Fatal(err)
	}
	r := restored(t, snapshotBytes(t, s))
	if got := getKV(t, r, "big", 0); !bytes.Equal(got.Value, big) {
		t.Fatalf("big value: %d bytes back", len(got.Value))
	}
}
