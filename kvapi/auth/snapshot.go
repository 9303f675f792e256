package auth

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"slices"

	"go.etcd.io/etcd/api/v3/authpb"
)

// Snapshot format (integers are uvarints unless said otherwise):
//
//	magic "MKVAUTH\x01"
//	payload length
//	payload:
//	  enabled (one byte, 0 or 1), revision
//	  user count, then per user in name order:
//	    name, password, flags (one byte: 1 = created without a password),
//	    role count, role names (sorted)
//	  role count, then per role in name order:
//	    name, permission count, then per permission in the role's order:
//	    type (one byte), key, range end
//	CRC-32C (Castagnoli) of magic, length and payload, 4 bytes little endian
//
// Strings and byte strings are a length and the bytes. The section reads
// exactly its own bytes, so other sections may follow it in one stream. Two
// stores in the same state write identical bytes.
const snapMagic = "MKVAUTH\x01"

// SnapshotMagic is how an auth snapshot begins, so a reader of a stream
// that may or may not hold one can tell.
const SnapshotMagic = snapMagic

// maxSnapshotPayload bounds the payload a snapshot may claim.
const maxSnapshotPayload = 1 << 30

// ErrCorruptSnapshot is wrapped by every error ReadSnapshot returns for
// malformed input.
var ErrCorruptSnapshot = errors.New("auth: corrupt snapshot")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Snapshot is an immutable capture of the auth state; tokens are not part
// of it (they are per member, as in etcd: a member that restores a snapshot
// knows only the tokens issued after it).
type Snapshot struct{ st *state }

// Snapshot captures the current state. O(1); safe from any goroutine.
func (s *Store) Snapshot() *Snapshot { return &Snapshot{st: s.cur.Load()} }

// Restore replaces the state with a snapshot's, as the apply goroutine's
// only change of the state that is not a request. Disabling authentication
// this way drops every token.
func (s *Store) Restore(sn *Snapshot) {
	s.cur.Store(sn.st)
	if sn.st.enabled {
		s.tokens.enable()
	} else {
		s.tokens.disable()
	}
}

// EmptySnapshot is the state of a fresh store (for a stream written before
// auth state was part of snapshots).
func EmptySnapshot() *Snapshot { return &Snapshot{st: newState()} }

// WriteTo serializes the snapshot.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	st := sn.st
	var p []byte
	p = append(p, b2byte(st.enabled))
	p = binary.AppendUvarint(p, st.revision)

	users := slices.Sorted(maps.Keys(st.users))
	p = binary.AppendUvarint(p, uint64(len(users)))
	for _, name := range users {
		u := st.users[name]
		p = appendBytes(p, []byte(u.name))
		p = appendBytes(p, u.password)
		p = append(p, b2byte(u.noPassword))
		p = binary.AppendUvarint(p, uint64(len(u.roles)))
		for _, r := range u.roles {
			p = appendBytes(p, []byte(r))
		}
	}
	roles := slices.Sorted(maps.Keys(st.roles))
	p = binary.AppendUvarint(p, uint64(len(roles)))
	for _, name := range roles {
		r := st.roles[name]
		p = appendBytes(p, []byte(r.name))
		p = binary.AppendUvarint(p, uint64(len(r.perms)))
		for _, pm := range r.perms {
			p = append(p, byte(pm.typ))
			p = appendBytes(p, pm.key)
			p = appendBytes(p, pm.end)
		}
	}

	out := make([]byte, 0, len(snapMagic)+binary.MaxVarintLen64+len(p)+4)
	out = append(out, snapMagic...)
	out = binary.AppendUvarint(out, uint64(len(p)))
	out = append(out, p...)
	out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, crcTable))
	n, err := w.Write(out)
	return int64(n), err
}

// ReadSnapshot reads and verifies one snapshot written by WriteTo, reading
// no byte beyond it.
func ReadSnapshot(r io.Reader) (*Snapshot, error) {
	head := make([]byte, len(snapMagic))
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, readErr(err)
	}
	if string(head) != snapMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrCorruptSnapshot)
	}
	br := byteReader{r: r}
	n, err := binary.ReadUvarint(&br)
	if err != nil {
		return nil, readErr(err)
	}
	if n > maxSnapshotPayload {
		return nil, fmt.Errorf("%w: payload length %d", ErrCorruptSnapshot, n)
	}
	var buf bytes.Buffer
	// Grows as bytes arrive: a corrupt length cannot make it allocate much
	// more than the input holds.
	if got, err := buf.ReadFrom(io.LimitReader(r, int64(n)+4)); err != nil {
		return nil, readErr(err)
	} else if got != int64(n)+4 {
		return nil, fmt.Errorf("%w: truncated", ErrCorruptSnapshot)
	}
	body := buf.Bytes()
	payload, tail := body[:n], body[n:]
	crc := crc32.Update(crc32.Checksum(head, crcTable), crcTable, binary.AppendUvarint(nil, n))
	if crc32.Update(crc, crcTable, payload) != binary.LittleEndian.Uint32(tail) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorruptSnapshot)
	}
	st, err := decodeState(payload)
	if err != nil {
		return nil, err
	}
	return &Snapshot{st: st}, nil
}

func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated", ErrCorruptSnapshot)
	}
	return fmt.Errorf("auth: reading snapshot: %w", err)
}

// decodeState parses and checks a payload, and derives each user's
// permissions.
func decodeState(p []byte) (*state, error) {
	d := decoder{p: p}
	st := newState()
	st.enabled = d.bool()
	st.revision = d.uvarint()
	nu := d.count()
	for range nu {
		u := &user{name: d.str(), password: d.bytes()}
		u.noPassword = d.bool()
		nr := d.count()
		for range nr {
			u.roles = append(u.roles, d.str())
		}
		if d.err != nil {
			break
		}
		if u.name == "" || st.users[u.name] != nil || !slices.IsSorted(u.roles) || len(slices.Compact(slices.Clone(u.roles))) != len(u.roles) {
			return nil, fmt.Errorf("%w: bad user %q", ErrCorruptSnapshot, u.name)
		}
		if u.noPassword {
			u.password = nil
		}
		st.users[u.name] = u
	}
	nr := d.count()
	for range nr {
		r := &role{name: d.str()}
		np := d.count()
		for range np {
			pm := perm{typ: authpb.Permission_Type(d.byte())}
			pm.key, pm.end = d.bytes(), d.bytes()
			if pm.typ > authpb.Permission_READWRITE {
				d.fail("permission type %d", pm.typ)
			}
			r.perms = append(r.perms, pm)
		}
		if d.err != nil {
			break
		}
		if r.name == "" || st.roles[r.name] != nil {
			return nil, fmt.Errorf("%w: bad role %q", ErrCorruptSnapshot, r.name)
		}
		st.roles[r.name] = r
	}
	if d.err == nil && d.off != len(d.p) {
		d.fail("%d trailing bytes", len(d.p)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}
	if err := finishState(st); err != nil {
		return nil, err
	}
	return st, nil
}

// decoder reads payload fields; the first error sticks and later reads
// return zero values.
type decoder struct {
	p   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorruptSnapshot, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.p[d.off:])
	if n <= 0 {
		d.fail("bad varint at %d", d.off)
		return 0
	}
	d.off += n
	return x
}

// count reads an element count, which cannot exceed the bytes left.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.p)-d.off) {
		d.fail("count %d beyond the payload", n)
		return 0
	}
	return int(n)
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.p) {
		d.fail("truncated payload")
		return 0
	}
	b := d.p[d.off]
	d.off++
	return b
}

func (d *decoder) bool() bool {
	switch b := d.byte(); b {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("bad flag %d", b)
		return false
	}
}

func (d *decoder) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	b := bytes.Clone(d.p[d.off : d.off+n])
	d.off += n
	return b
}

func (d *decoder) str() string { return string(d.bytes()) }

func appendBytes(p, b []byte) []byte {
	p = binary.AppendUvarint(p, uint64(len(b)))
	return append(p, b...)
}

func b2byte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// byteReader reads one byte at a time from r, so that reading a varint
// consumes nothing after it.
type byteReader struct{ r io.Reader }

func (b *byteReader) ReadByte() (byte, error) {
	var one [1]byte
	if _, err := io.ReadFull(b.r, one[:]); err != nil {
		return 0, err
	}
	return one[0], nil
}
