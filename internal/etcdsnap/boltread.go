package etcdsnap

import (
	"bytes"
	"fmt"
	"io"
)

// maxDepth bounds the depth of a B+tree; a tree of 4 KiB pages needs a
// handful of levels for any file that fits on a disk.
const maxDepth = 32

// boltReader reads a bbolt database and trusts nothing in it: every offset is
// checked against its page, every page id against the file, every page may
// be visited once, keys must ascend, and no allocation exceeds the file's
// size.
type boltReader struct {
	r        io.ReaderAt
	pageSize int
	hwm      uint64
	root     uint64
	seen     []uint64 // bitmap of visited pages
	bufs     [][]byte // a page buffer per tree depth
}

// bucketRef locates a bucket's tree: a root page, or an inline leaf page.
type bucketRef struct {
	root   uint64
	inline []byte
}

// corruptf builds an error wrapping ErrCorrupt.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// readFull reads len(b) bytes at off.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		return corruptf("truncated at offset %d", off+int64(n))
	}
	return fmt.Errorf("etcdsnap: read at offset %d: %w", off, err)
}

// readMeta reads the meta record of the meta page at off, if the file has one
// there that is valid and fits a file of size bytes.
func readMeta(r io.ReaderAt, size, off int64, pageSize int) (meta, bool, error) {
	if off+pageHeaderSize+metaSize > size {
		return meta{}, false, nil
	}
	var b [pageHeaderSize + metaSize]byte
	if err := readFull(r, b[:], off); err != nil {
		return meta{}, false, err
	}
	m, ok := decodeMeta(b[pageHeaderSize:])
	if !ok || (pageSize != 0 && int(m.pageSize) != pageSize) || !validPageSize(m.pageSize) {
		return meta{}, false, nil
	}
	if m.hwm < firstDataPage-1 || m.hwm > uint64(size)/uint64(m.pageSize) || m.root < 2 || m.root >= m.hwm {
		return meta{}, false, nil
	}
	return m, true, nil
}

func validPageSize(ps uint32) bool {
	return ps >= minPageSize && ps <= maxPageSize && ps&(ps-1) == 0
}

// openBolt checks the meta pages of the size-byte database in r and picks the
// valid one with the higher transaction id, as bbolt does.
func openBolt(r io.ReaderAt, size int64) (*boltReader, error) {
	m0, ok0, err := readMeta(r, size, 0, 0)
	if err != nil {
		return nil, err
	}
	var m1 meta
	ok1 := false
	if ok0 {
		if m1, ok1, err = readMeta(r, size, int64(m0.pageSize), int(m0.pageSize)); err != nil {
			return nil, err
		}
	} else {
		// The first meta page is damaged: look for the second one at every
		// possible page size.
		for ps := minPageSize; ps <= maxPageSize && !ok1; ps *= 2 {
			if m1, ok1, err = readMeta(r, size, int64(ps), ps); err != nil {
				return nil, err
			}
		}
	}
	m := m0
	switch {
	case ok0 && ok1:
		if m1.txid > m0.txid {
			m = m1
		}
	case ok1:
		m = m1
	case !ok0:
		return nil, corruptf("no valid bbolt meta page")
	}
	return &boltReader{
		r:        r,
		pageSize: int(m.pageSize),
		hwm:      m.hwm,
		root:     m.root,
		seen:     make([]uint64, (m.hwm+63)/64),
	}, nil
}

// buf returns the page buffer of depth, at least n bytes long.
func (br *boltReader) buf(depth, n int) []byte {
	for len(br.bufs) <= depth {
		br.bufs = append(br.bufs, nil)
	}
	if cap(br.bufs[depth]) < n {
		br.bufs[depth] = make([]byte, n)
	}
	return br.bufs[depth][:n]
}

// page reads page id (with its overflow pages) into depth's buffer.
func (br *boltReader) page(id uint64, depth int) (pageHeader, []byte, error) {
	if id < firstDataPage-1 || id >= br.hwm {
		return pageHeader{}, nil, corruptf("page %d out of range [2, %d)", id, br.hwm)
	}
	ps := uint64(br.pageSize)
	b := br.buf(depth, pageHeaderSize)
	if err := readFull(br.r, b, int64(id*ps)); err != nil {
		return pageHeader{}, nil, err
	}
	h := decodePageHeader(b)
	if h.id != id {
		return pageHeader{}, nil, corruptf("page %d says it is page %d", id, h.id)
	}
	end := id + 1 + uint64(h.overflow)
	if end > br.hwm {
		return pageHeader{}, nil, corruptf("page %d overflows the file", id)
	}
	for p := id; p < end; p++ {
		if br.seen[p/64]&(1<<(p%64)) != 0 {
			return pageHeader{}, nil, corruptf("page %d is referenced twice", p)
		}
		br.seen[p/64] |= 1 << (p % 64)
	}
	b = br.buf(depth, int((end-id)*ps))
	if err := readFull(br.r, b, int64(id*ps)); err != nil {
		return pageHeader{}, nil, err
	}
	return h, b, nil
}

// element returns the key and value of element i of a page (value nil for a
// branch element, whose child page id is returned instead).
func element(page []byte, h pageHeader, i int) (flags uint32, k, v []byte, child uint64, err error) {
	at := pageHeaderSize + i*elemSize
	var pos, ksize, vsize uint64
	if h.flags == leafPageFlag {
		flags = le.Uint32(page[at:])
		pos, ksize, vsize = uint64(le.Uint32(page[at+4:])), uint64(le.Uint32(page[at+8:])), uint64(le.Uint32(page[at+12:]))
	} else {
		pos, ksize, child = uint64(le.Uint32(page[at:])), uint64(le.Uint32(page[at+4:])), le.Uint64(page[at+8:])
	}
	start := uint64(at) + pos
	if end := start + ksize + vsize; end > uint64(len(page)) {
		return 0, nil, nil, 0, corruptf("page %d: element %d out of bounds", h.id, i)
	}
	k = page[start : start+ksize]
	if h.flags == leafPageFlag {
		v = page[start+ksize : start+ksize+vsize]
	}
	return flags, k, v, child, nil
}

// walker visits the leaf elements of one bucket in key order.
type walker struct {
	br   *boltReader
	fn   func(flags uint32, k, v []byte) error
	last []byte
	n    int
}

// leaf visits the elements of a leaf page.
func (w *walker) leaf(h pageHeader, page []byte) error {
	if pageHeaderSize+int(h.count)*elemSize > len(page) {
		return corruptf("page %d: %d elements do not fit", h.id, h.count)
	}
	for i := range int(h.count) {
		flags, k, v, _, err := element(page, h, i)
		if err != nil {
			return err
		}
		if len(k) == 0 {
			return corruptf("page %d: empty key", h.id)
		}
		if w.n > 0 && bytes.Compare(k, w.last) <= 0 {
			return corruptf("page %d: keys out of order", h.id)
		}
		w.last = append(w.last[:0], k...)
		w.n++
		if err := w.fn(flags, k, v); err != nil {
			return err
		}
	}
	return nil
}

// walk visits the tree under page id.
func (w *walker) walk(id uint64, depth int) error {
	if depth >= maxDepth {
		return corruptf("tree deeper than %d levels", maxDepth)
	}
	h, page, err := w.br.page(id, depth)
	if err != nil {
		return err
	}
	switch h.flags {
	case leafPageFlag:
		return w.leaf(h, page)
	case branchPageFlag:
		if h.count == 0 || pageHeaderSize+int(h.count)*elemSize > len(page) {
			return corruptf("page %d: bad branch element count %d", id, h.count)
		}
		for i := range int(h.count) {
			_, _, _, child, err := element(page, h, i)
			if err != nil {
				return err
			}
			if err := w.walk(child, depth+1); err != nil {
				return err
			}
		}
		return nil
	default:
		return corruptf("page %d: flags %#x where a tree page belongs", id, h.flags)
	}
}

// each calls fn for every entry of the bucket b in key order. k and v are
// valid only during the call.
func (br *boltReader) each(b bucketRef, fn func(flags uint32, k, v []byte) error) error {
	w := &walker{br: br, fn: fn}
	if b.inline == nil {
		return w.walk(b.root, 0)
	}
	if len(b.inline) < pageHeaderSize {
		return corruptf("inline bucket too short")
	}
	h := decodePageHeader(b.inline)
	if h.flags != leafPageFlag {
		return corruptf("inline bucket page has flags %#x", h.flags)
	}
	return w.leaf(h, b.inline)
}

// buckets returns the top-level buckets whose names want lists.
func (br *boltReader) buckets(want map[string]bool) (map[string]bucketRef, error) {
	out := map[string]bucketRef{}
	err := br.each(bucketRef{root: br.root}, func(flags uint32, k, v []byte) error {
		if flags&bucketLeafFlag == 0 {
			return corruptf("top-level entry %q is not a bucket", k)
		}
		if len(v) < bucketHeaderSize {
			return corruptf("bucket %q: header too short", k)
		}
		if !want[string(k)] {
			return nil
		}
		ref := bucketRef{root: le.Uint64(v)}
		if ref.root == 0 {
			ref.inline = bytes.Clone(v[bucketHeaderSize:])
		}
		out[string(k)] = ref
		return nil
	})
	return out, err
}
