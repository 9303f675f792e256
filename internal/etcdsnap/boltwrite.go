package etcdsnap

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
)

// bucketSpec is one top-level bucket to write: each calls yield for every
// entry in strictly ascending key order. The key and value passed to yield
// may be reused after yield returns.
type bucketSpec struct {
	name []byte
	each func(yield func(k, v []byte) error) error
}

// pageSink hands out page ids in order and writes the pages, or only counts
// them when w is nil.
type pageSink struct {
	w        io.Writer
	pageSize int
	next     uint64 // the next page id
	pad      []byte // zeros for padding
	sum      uint32 // CRC-32C of every entry, to tell the passes apart
	lens     [8]byte
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// note folds an entry into the running checksum.
func (s *pageSink) note(k, v []byte) {
	le.PutUint32(s.lens[0:], uint32(len(k)))
	le.PutUint32(s.lens[4:], uint32(len(v)))
	s.sum = crc32.Update(s.sum, castagnoli, s.lens[:])
	s.sum = crc32.Update(s.sum, castagnoli, k)
	s.sum = crc32.Update(s.sum, castagnoli, v)
}

// emit writes one page of size bytes (possibly spanning several pages),
// padded to whole pages, and returns its id. page holds the bytes, its header
// carrying the id that next had; it is nil while counting.
func (s *pageSink) emit(page []byte, size int) (uint64, error) {
	id := s.next
	n := pagesFor(size, s.pageSize)
	s.next += uint64(n)
	if s.w == nil {
		return id, nil
	}
	if _, err := s.w.Write(page); err != nil {
		return 0, err
	}
	for left := n*s.pageSize - len(page); left > 0; {
		k := min(left, len(s.pad))
		if _, err := s.w.Write(s.pad[:k]); err != nil {
			return 0, err
		}
		left -= k
	}
	return id, nil
}

func pagesFor(size, pageSize int) int { return (size + pageSize - 1) / pageSize }

// node is a page under construction: its elements' key and value bytes
// packed in data, and each element's offsets.
type node struct {
	elems []elem
	data  []byte
}

type elem struct {
	off, ksize, vsize int
	pgid              uint64 // branch elements only
	flags             uint32 // leaf elements only
}

func (n *node) size() int { return pageHeaderSize + len(n.elems)*elemSize + len(n.data) }

// fits reports whether an element of extra bytes still fits in one page. A
// node takes any element while it has fewer than minElems (the page then
// overflows): a leaf needs one, a branch two, or levels of single-child
// branches over huge keys would never converge to a root.
func (n *node) fits(extra, pageSize, minElems int) bool {
	if len(n.elems) < minElems {
		return true
	}
	return len(n.elems) < maxElems-1 && n.size()+elemSize+extra <= pageSize
}

// firstKey is the key of n's first element (nil for the empty leaf of an
// empty tree).
func (n *node) firstKey() []byte {
	if len(n.elems) == 0 {
		return nil
	}
	e := n.elems[0]
	return n.data[e.off : e.off+e.ksize]
}

func (n *node) reset() {
	n.elems = n.elems[:0]
	n.data = n.data[:0]
}

// level is the pending branch nodes of one tree level. A full node is held
// back until the next one fills, so that the last node of the level can give
// its elements to the held one if it would otherwise be a branch with a
// single child (bbolt requires two).
type level struct {
	cur, held node
	hasHeld   bool
}

// absorb appends o's elements to n.
func (n *node) absorb(o *node) {
	shift := len(n.data)
	n.data = append(n.data, o.data...)
	for _, e := range o.elems {
		e.off += shift
		n.elems = append(n.elems, e)
	}
}

// tree builds one B+tree bottom up from entries in ascending key order: full
// leaves are written at once and their first keys collected into branch
// nodes, one pending node per level. Memory stays at a few pages per level.
type tree struct {
	sink     *pageSink
	leafFlag uint32 // element flags of every leaf entry (bucketLeafFlag in the root bucket)
	leaf     node
	leaves   int      // leaf pages written
	branches []*level // branches[i] collects the children of level i (leaves are level 0)
	last     []byte
	entries  int
	buf      []byte // page assembly buffer
}

func newTree(sink *pageSink, leafFlag uint32) *tree {
	return &tree{sink: sink, leafFlag: leafFlag}
}

// add appends one entry; keys must be non-empty and strictly ascending.
func (t *tree) add(k, v []byte) error {
	if len(k) == 0 {
		return fmt.Errorf("etcdsnap: empty key")
	}
	if t.entries > 0 && bytes.Compare(k, t.last) <= 0 {
		return fmt.Errorf("etcdsnap: key %q after %q: keys must ascend", k, t.last)
	}
	t.last = append(t.last[:0], k...)
	t.entries++
	t.sink.note(k, v)
	if !t.leaf.fits(len(k)+len(v), t.sink.pageSize, 1) {
		if err := t.flushLeaf(); err != nil {
			return err
		}
	}
	off := len(t.leaf.data)
	t.leaf.data = append(t.leaf.data, k...)
	t.leaf.data = append(t.leaf.data, v...)
	t.leaf.elems = append(t.leaf.elems, elem{off: off, ksize: len(k), vsize: len(v), flags: t.leafFlag})
	return nil
}

// assemble lays out n as a page with the given flags and id in t.buf.
func (t *tree) assemble(n *node, flags uint16, id uint64) []byte {
	size := n.size()
	if cap(t.buf) < size {
		t.buf = make([]byte, size, max(size, t.sink.pageSize))
	}
	b := t.buf[:size]
	pages := pagesFor(size, t.sink.pageSize)
	pageHeader{id: id, flags: flags, count: uint16(len(n.elems)), overflow: uint32(pages - 1)}.encode(b)
	dataStart := pageHeaderSize + len(n.elems)*elemSize
	for i, e := range n.elems {
		at := pageHeaderSize + i*elemSize
		pos := uint32(dataStart + e.off - at)
		if flags == leafPageFlag {
			le.PutUint32(b[at:], e.flags)
			le.PutUint32(b[at+4:], pos)
			le.PutUint32(b[at+8:], uint32(e.ksize))
			le.PutUint32(b[at+12:], uint32(e.vsize))
		} else {
			le.PutUint32(b[at:], pos)
			le.PutUint32(b[at+4:], uint32(e.ksize))
			le.PutUint64(b[at+8:], e.pgid)
		}
	}
	copy(b[dataStart:], n.data)
	return b
}

// write emits n as one page and passes its first key up to level.
func (t *tree) write(n *node, flags uint16, level int) error {
	id := t.sink.next
	var page []byte
	if t.sink.w != nil {
		page = t.assemble(n, flags, id)
	}
	if _, err := t.sink.emit(page, n.size()); err != nil {
		return err
	}
	return t.addChild(level, n.firstKey(), id)
}

func (t *tree) flushLeaf() error {
	t.leaves++
	err := t.write(&t.leaf, leafPageFlag, 0)
	t.leaf.reset()
	return err
}

// addChild adds a reference to page id, whose first key is key, to the
// branch node of level lv. When the current node is full, the held one is
// written and the current one held.
func (t *tree) addChild(lv int, key []byte, id uint64) error {
	for len(t.branches) <= lv {
		t.branches = append(t.branches, &level{})
	}
	l := t.branches[lv]
	if !l.cur.fits(len(key), t.sink.pageSize, 2) {
		if l.hasHeld {
			if err := t.write(&l.held, branchPageFlag, lv+1); err != nil {
				return err
			}
		}
		l.held, l.cur = l.cur, l.held
		l.cur.reset()
		l.hasHeld = true
	}
	off := len(l.cur.data)
	l.cur.data = append(l.cur.data, key...)
	l.cur.elems = append(l.cur.elems, elem{off: off, ksize: len(key), pgid: id})
	return nil
}

// finish writes what is pending and returns the root page id.
func (t *tree) finish() (uint64, error) {
	if len(t.leaf.elems) > 0 || t.leaves == 0 {
		if err := t.flushLeaf(); err != nil {
			return 0, err
		}
	}
	for i := 0; i < len(t.branches); i++ {
		l := t.branches[i]
		if i == len(t.branches)-1 && !l.hasHeld && len(l.cur.elems) == 1 {
			return l.cur.elems[0].pgid, nil // the single node below is the root
		}
		if l.hasHeld {
			if len(l.cur.elems) < 2 {
				l.held.absorb(&l.cur)
				l.cur.reset()
			}
			if err := t.write(&l.held, branchPageFlag, i+1); err != nil {
				return 0, err
			}
		}
		if len(l.cur.elems) > 0 {
			if err := t.write(&l.cur, branchPageFlag, i+1); err != nil {
				return 0, err
			}
		}
	}
	return 0, fmt.Errorf("etcdsnap: internal error: tree without root")
}

// layout writes (or counts) every bucket's tree and then the root bucket's,
// and returns the root bucket's root page. Buckets must be sorted by name.
func layout(sink *pageSink, buckets []bucketSpec) (uint64, error) {
	roots := make([]uint64, len(buckets))
	for i, b := range buckets {
		t := newTree(sink, 0)
		if err := b.each(t.add); err != nil {
			return 0, fmt.Errorf("bucket %s: %w", b.name, err)
		}
		root, err := t.finish()
		if err != nil {
			return 0, fmt.Errorf("bucket %s: %w", b.name, err)
		}
		roots[i] = root
	}
	rt := newTree(sink, bucketLeafFlag)
	for i, b := range buckets {
		if err := rt.add(b.name, bucketHeader(roots[i])); err != nil {
			return 0, err
		}
	}
	return rt.finish()
}

// boltPlan is the outcome of a counting pass: what the meta pages say.
type boltPlan struct {
	pageSize int
	root     uint64
	hwm      uint64
	sum      uint32
}

// size is the database's size in bytes.
func (p boltPlan) size() int64 { return int64(p.hwm) * int64(p.pageSize) }

// planBolt runs the layout without writing, to learn the root page and the
// number of pages.
func planBolt(buckets []bucketSpec, pageSize int) (boltPlan, error) {
	sink := &pageSink{pageSize: pageSize, next: firstDataPage}
	root, err := layout(sink, buckets)
	if err != nil {
		return boltPlan{}, err
	}
	return boltPlan{pageSize: pageSize, root: root, hwm: sink.next, sum: sink.sum}, nil
}

// writeBolt writes the database planned by planBolt: two meta pages, an
// empty freelist page, then the pages of layout. The buckets must yield the
// same entries as during planning.
func writeBolt(w io.Writer, p boltPlan, buckets []bucketSpec) error {
	ps := p.pageSize
	head := make([]byte, firstDataPage*ps)
	for i := range 2 {
		pg := head[i*ps:]
		pageHeader{id: uint64(i), flags: metaPageFlag}.encode(pg)
		m := meta{pageSize: uint32(ps), root: p.root, freelist: 2, hwm: p.hwm, txid: uint64(i)}
		m.encode(pg[pageHeaderSize:])
	}
	pageHeader{id: 2, flags: freelistPageFlag}.encode(head[2*ps:])
	if _, err := w.Write(head); err != nil {
		return err
	}
	sink := &pageSink{w: w, pageSize: ps, next: firstDataPage, pad: make([]byte, ps)}
	root, err := layout(sink, buckets)
	if err != nil {
		return err
	}
	if root != p.root || sink.next != p.hwm || sink.sum != p.sum {
		return ErrSourceChanged
	}
	return nil
}
