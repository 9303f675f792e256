package mvcc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/tidwall/btree"
)

// Snapshot format (all integers are varints unless said otherwise):
//
//	magic "MKVMVCC\x02"
//	rev, compact revision (-1 before the first compaction)
//	records, each a tag byte and its fields, in this order:
//	  'l' lease:   id, ttl, remaining, granted, renewed  (ascending id)
//	  'b' base:    version                    (ascending key; the one version kept
//	                                           below the compact revision, if any)
//	  'e' event:   version                    (every other version, in write order)
//	  'z' end
//	CRC-32C (Castagnoli) of everything above, 4 bytes little endian
//
// A version is: key length (uvarint), key, value length (uvarint), value,
// mod, create, version, lease. The log of events is written as is, so a
// restored store replays history in the original write order.
const snapMagic = "MKVMVCC\x02"

const (
	tagLease byte = 'l'
	tagBase  byte = 'b'
	tagEvent byte = 'e'
	tagEnd   byte = 'z'
)

// maxFieldLen bounds a key or value length read from a snapshot.
const maxFieldLen = 1 << 30

// crcTable returns the CRC-32C table (built once by the standard library).
func crcTable() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) }

var _ io.WriterTo = (*Snapshot)(nil)

// Snapshot is a consistent, immutable capture of a store's whole state.
// Taking one costs O(1) (the B-trees are copy-on-write); serializing it with
// WriteTo may then run on any goroutine while the store keeps changing.
type Snapshot struct {
	heads   *btree.BTreeG[*ver]
	hists   *btree.BTreeG[hist]
	leases  *btree.BTreeG[leaseRec]
	log     []*ver
	rev     int64
	compact int64

	baseOnce sync.Once
	baseVers []*ver // see base
}

// Snapshot captures the current state. Cheap: the writer is held up only for
// the copy of three B-tree roots; later writes copy the B-tree nodes they
// touch while the snapshot is alive. Safe from any goroutine.
func (s *Store) Snapshot() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &Snapshot{
		heads:   s.heads.Copy(),
		hists:   s.hists.Copy(),
		leases:  s.leases.Copy(),
		log:     s.log[:len(s.log):len(s.log)],
		rev:     s.rev.Load(),
		compact: s.compact.Load(),
	}
}

// Rev returns the revision the snapshot was taken at.
func (sn *Snapshot) Rev() int64 { return sn.rev }

// encoder writes records and keeps the running checksum.
type encoder struct {
	w   *bufio.Writer
	tab *crc32.Table
	crc uint32
	buf []byte
	err error
}

func (e *encoder) flushRecord() {
	if e.err == nil {
		e.crc = crc32.Update(e.crc, e.tab, e.buf)
		_, e.err = e.w.Write(e.buf)
	}
	e.buf = e.buf[:0]
}

func (e *encoder) varint(x int64) { e.buf = binary.AppendVarint(e.buf, x) }

func (e *encoder) bytes(b []byte) {
	e.buf = binary.AppendUvarint(e.buf, uint64(len(b)))
	e.buf = append(e.buf, b...)
}

func (e *encoder) version(tag byte, v *ver) {
	e.buf = append(e.buf, tag)
	e.bytes(v.key)
	e.bytes(v.value)
	e.varint(v.mod)
	e.varint(v.create)
	e.varint(v.ver)
	e.varint(v.lease)
	e.flushRecord()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteTo serializes the snapshot: every retained version (the full history
// since the compact revision, tombstones included), the revision, the compact
// revision and the leases with their checkpoints. Two stores in the same
// state write identical bytes.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	if w == nil {
		return 0, fmt.Errorf("%w: nil writer", ErrNilRequest)
	}
	cw := &countWriter{w: w}
	e := &encoder{w: bufio.NewWriterSize(cw, 64<<10), tab: crcTable(), buf: make([]byte, 0, 256)}

	e.buf = append(e.buf, snapMagic...)
	e.varint(sn.rev)
	e.varint(sn.compact)
	e.flushRecord()

	sn.leases.Scan(func(l leaseRec) bool {
		e.buf = append(e.buf, tagLease)
		e.varint(l.id)
		e.varint(l.ttl)
		e.varint(l.remaining)
		e.varint(int64(l.granted))
		e.varint(int64(l.renewed))
		e.flushRecord()
		return e.err == nil
	})

	// Base versions: a key's oldest version, when it is below the compact
	// revision (the log starts at the compact revision).
	hit := sn.hists.Iter()
	more := hit.First()
	sn.heads.Scan(func(h *ver) bool {
		oldest := h
		for more && string(hit.Item().key) < string(h.key) {
			more = hit.Next()
		}
		if more && string(hit.Item().key) == string(h.key) && len(hit.Item().vers) > 0 {
			oldest = hit.Item().vers[0]
		}
		if oldest.mod < sn.compact {
			e.version(tagBase, oldest)
		}
		return e.err == nil
	})
	hit.Release()

	for _, v := range sn.log {
		if e.err != nil {
			break
		}
		e.version(tagEvent, v)
	}

	e.buf = append(e.buf, tagEnd)
	e.flushRecord()
	if e.err == nil {
		var tail [4]byte
		binary.LittleEndian.PutUint32(tail[:], e.crc)
		_, e.err = e.w.Write(tail[:])
	}
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return cw.n, e.err
}

// Restore replaces the whole state of the store with a snapshot written by
// Snapshot.WriteTo. The input is read and verified completely (checksum and
// consistency) before anything changes; on error the store is untouched.
// Corrupt input gives an error wrapping ErrCorruptSnapshot. The observer is
// not called. Writer only.
func (s *Store) Restore(r io.Reader) error {
	if r == nil {
		return fmt.Errorf("%w: nil reader", ErrNilRequest)
	}
	st, err := decodeSnapshot(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.install(st)
	s.mu.Unlock()
	return nil
}

// decoder reads snapshot fields and keeps the running checksum.
type decoder struct {
	r    *bufio.Reader
	tab  *crc32.Table
	crc  uint32
	one  [1]byte
	rerr error // the last error of the underlying reader
}

// corrupt builds an error for malformed input.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorruptSnapshot, fmt.Sprintf(format, args...))
}

// readErr turns a read error into the error Restore reports.
func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corrupt("truncated")
	}
	return fmt.Errorf("mvcc: reading snapshot: %w", err)
}

func (d *decoder) ReadByte() (byte, error) {
	b, err := d.r.ReadByte()
	if err != nil {
		d.rerr = err
		return 0, err
	}
	d.one[0] = b
	d.crc = crc32.Update(d.crc, d.tab, d.one[:])
	return b, nil
}

func (d *decoder) full(p []byte) error {
	if _, err := io.ReadFull(d.r, p); err != nil {
		return readErr(err)
	}
	d.crc = crc32.Update(d.crc, d.tab, p)
	return nil
}

func (d *decoder) varint() (int64, error) {
	x, err := binary.ReadVarint(d)
	if err != nil {
		return 0, d.fieldErr()
	}
	return x, nil
}

// fieldErr is the error for a varint that could not be read: the reader's
// failure if there was one, else malformed input (an overlong varint).
func (d *decoder) fieldErr() error {
	if d.rerr != nil {
		return readErr(d.rerr)
	}
	return corrupt("bad varint")
}

// bytesInto reads a length-prefixed field, reusing buf when it is big enough.
// Large fields are read in chunks, so a corrupt length cannot make it
// allocate much more than the input holds.
func (d *decoder) bytesInto(buf []byte) ([]byte, error) {
	n, err := binary.ReadUvarint(d)
	if err != nil {
		return nil, d.fieldErr()
	}
	if n > maxFieldLen {
		return nil, corrupt("field length %d too large", n)
	}
	const chunk = 1 << 20
	if n <= chunk {
		if uint64(cap(buf)) >= n {
			buf = buf[:n]
		} else {
			buf = make([]byte, n)
		}
		return buf, d.full(buf)
	}
	buf = buf[:0]
	for left := int(n); left > 0; {
		k := min(left, chunk)
		at := len(buf)
		buf = append(buf, make([]byte, k)...)
		if err := d.full(buf[at:]); err != nil {
			return nil, err
		}
		left -= k
	}
	return buf, nil
}

// version reads one version record. The key goes into keyBuf (which the
// caller copies if it keeps it); the value is freshly allocated.
func (d *decoder) version(keyBuf []byte) (*ver, []byte, error) {
	key, err := d.bytesInto(keyBuf)
	if err != nil {
		return nil, keyBuf, err
	}
	value, err := d.bytesInto(nil)
	if err != nil {
		return nil, key, err
	}
	v := &ver{}
	if len(value) > 0 {
		v.value = value
	}
	for _, p := range []*int64{&v.mod, &v.create, &v.ver, &v.lease} {
		if *p, err = d.varint(); err != nil {
			return nil, key, err
		}
	}
	if len(key) == 0 {
		return nil, key, corrupt("empty key")
	}
	if v.mod < 1 {
		return nil, key, corrupt("revision %d", v.mod)
	}
	if v.tomb() {
		if v.value != nil || v.create != 0 || v.lease != 0 {
			return nil, key, corrupt("bad tombstone for key %q", key)
		}
	} else if v.ver < 1 || v.create < 1 || v.create > v.mod {
		return nil, key, corrupt("bad version of key %q", key)
	}
	return v, key, nil
}

// decodeSnapshot reads and verifies a whole snapshot into a fresh state.
func decodeSnapshot(r *bufio.Reader) (*state, error) {
	d := &decoder{r: r, tab: crcTable()}
	magic := make([]byte, len(snapMagic))
	if err := d.full(magic); err != nil {
		return nil, err
	}
	if string(magic) != snapMagic {
		return nil, corrupt("bad magic")
	}
	st := newState()
	var err error
	if st.rev, err = d.varint(); err != nil {
		return nil, err
	}
	if st.compact, err = d.varint(); err != nil {
		return nil, err
	}
	if st.rev < 1 || st.compact < -1 || st.compact > st.rev {
		return nil, corrupt("revision %d, compact revision %d", st.rev, st.compact)
	}

	const (
		phaseLeases = iota
		phaseBase
		phaseLog
	)
	phase := phaseLeases
	var lastLease int64
	haveLease := false
	var lastBase []byte
	var lastMod int64
	var keyBuf []byte
	var size int64
	for {
		tag, err := d.ReadByte()
		if err != nil {
			return nil, readErr(err)
		}
		switch tag {
		case tagLease:
			if phase != phaseLeases {
				return nil, corrupt("lease record out of order")
			}
			var l leaseRec
			var granted, renewed int64
			for _, p := range []*int64{&l.id, &l.ttl, &l.remaining, &granted, &renewed} {
				if *p, err = d.varint(); err != nil {
					return nil, err
				}
			}
			if l.remaining < 0 || granted < 0 || renewed < 0 {
				return nil, corrupt("lease %d: negative checkpoint or index", l.id)
			}
			l.granted, l.renewed = uint64(granted), uint64(renewed)
			if l.id == 0 || (haveLease && l.id <= lastLease) {
				return nil, corrupt("lease id %d out of order", l.id)
			}
			lastLease, haveLease = l.id, true
			st.leases.Load(l)
			size += leaseOverhead

		case tagBase:
			if phase > phaseBase {
				return nil, corrupt("base record out of order")
			}
			phase = phaseBase
			var v *ver
			v, keyBuf, err = d.version(keyBuf)
			if err != nil {
				return nil, err
			}
			if lastBase != nil && bytes.Compare(keyBuf, lastBase) <= 0 {
				return nil, corrupt("base key %q out of order", keyBuf)
			}
			if v.tomb() || v.mod >= st.compact {
				return nil, corrupt("bad base version of key %q", keyBuf)
			}
			v.key = bytes.Clone(keyBuf)
			lastBase = v.key
			st.heads.Load(v)
			size += verSize(v)

		case tagEvent:
			phase = phaseLog
			var v *ver
			v, keyBuf, err = d.version(keyBuf)
			if err != nil {
				return nil, err
			}
			if v.mod < lastMod || v.mod > st.rev || v.mod < st.compact {
				return nil, corrupt("event revision %d out of order", v.mod)
			}
			lastMod = v.mod
			p := &ver{key: keyBuf}
			var hint btree.PathHint
			h, ok := st.heads.GetHint(p, &hint)
			if ok {
				if v.mod < h.mod {
					return nil, corrupt("key %q goes back in time", keyBuf)
				}
				v.key = h.key
				var hh btree.PathHint
				hs, _ := st.hists.GetHint(hist{key: h.key}, &hh)
				hs.key = h.key
				hs.vers = append(hs.vers, h)
				st.hists.SetHint(hs, &hh)
			} else {
				v.key = bytes.Clone(keyBuf)
			}
			st.heads.SetHint(v, &hint)
			st.log = append(st.log, v)
			size += verSize(v)

		case tagEnd:
			want := d.crc
			var tail [4]byte
			if _, err := io.ReadFull(d.r, tail[:]); err != nil {
				return nil, readErr(err)
			}
			if got := binary.LittleEndian.Uint32(tail[:]); got != want {
				return nil, corrupt("checksum mismatch")
			}
			var bad *ver
			st.heads.Scan(func(h *ver) bool {
				if !live(h) || h.lease == 0 {
					return true
				}
				if _, ok := st.leases.Get(leaseRec{id: h.lease}); !ok {
					bad = h
					return false
				}
				st.leaseKeys.Set(leaseKey{id: h.lease, key: h.key})
				return true
			})
			if bad != nil {
				return nil, corrupt("key %q attached to unknown lease %d", bad.key, bad.lease)
			}
			st.size = size
			return st, nil

		default:
			return nil, corrupt("unknown record tag %#x", tag)
		}
	}
}
