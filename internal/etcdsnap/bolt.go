package etcdsnap

import (
	"encoding/binary"
	"hash/fnv"
)

// The bbolt file format (version 2), as far as this package writes and reads
// it. Integers are little endian: bbolt lays its structs out in the machine's
// byte order, and every platform etcd ships for is little endian.
//
// A file is a sequence of pages of pageSize bytes, numbered from 0. Pages 0
// and 1 hold the two meta records (the valid one with the higher transaction
// id wins). Every other page starts with a 16-byte header:
//
//	id uint64, flags uint16, count uint16, overflow uint32
//
// overflow is the number of further pages the page spans. A branch page holds
// count elements of 16 bytes {pos uint32, ksize uint32, pgid uint64}, a leaf
// page count elements {flags uint32, pos uint32, ksize uint32, vsize uint32};
// pos is the distance from the element to its key, and a leaf's value follows
// its key. A branch element's key is the first key of its child. A leaf
// element with the bucket flag is a bucket: its value is a 16-byte header
// {root pgid uint64, sequence uint64}, followed, when root is 0, by the
// bucket's only page (a leaf) inline. The meta record names the root bucket,
// whose leaves are the top-level buckets.
const (
	pageHeaderSize   = 16
	elemSize         = 16 // branch and leaf elements have the same size
	bucketHeaderSize = 16
	metaSize         = 64

	boltMagic   uint32 = 0xED0CDAED
	boltVersion uint32 = 2

	branchPageFlag   uint16 = 0x01
	leafPageFlag     uint16 = 0x02
	metaPageFlag     uint16 = 0x04
	freelistPageFlag uint16 = 0x10

	bucketLeafFlag uint32 = 0x01

	// metaChecksumOffset is where the meta record's checksum field starts:
	// the FNV-64a sum covers the bytes before it.
	metaChecksumOffset = 56

	// firstDataPage is the first page after the two meta pages and the
	// freelist page this package writes.
	firstDataPage = 3

	// writePageSize is the page size of the files this package writes: the
	// page size of the platforms etcd mostly runs on. bbolt reads the page
	// size from the file, so any reader handles it.
	writePageSize = 4096
	// minPageSize and maxPageSize bound the page sizes accepted on reading.
	minPageSize = 512
	maxPageSize = 64 << 10

	// maxElems is the largest element count a page header can hold.
	maxElems = 0xFFFF
)

var le = binary.LittleEndian

// meta is bbolt's meta record.
type meta struct {
	pageSize uint32
	flags    uint32
	root     uint64 // root bucket's root page
	rootSeq  uint64
	freelist uint64
	hwm      uint64 // number of pages in use (the high water mark)
	txid     uint64
}

// encode writes m into b (at least metaSize bytes) with its checksum.
func (m *meta) encode(b []byte) {
	le.PutUint32(b[0:], boltMagic)
	le.PutUint32(b[4:], boltVersion)
	le.PutUint32(b[8:], m.pageSize)
	le.PutUint32(b[12:], m.flags)
	le.PutUint64(b[16:], m.root)
	le.PutUint64(b[24:], m.rootSeq)
	le.PutUint64(b[32:], m.freelist)
	le.PutUint64(b[40:], m.hwm)
	le.PutUint64(b[48:], m.txid)
	le.PutUint64(b[metaChecksumOffset:], metaSum(b))
}

// decodeMeta parses and verifies a meta record.
func decodeMeta(b []byte) (meta, bool) {
	if len(b) < metaSize || le.Uint32(b[0:]) != boltMagic || le.Uint32(b[4:]) != boltVersion {
		return meta{}, false
	}
	if le.Uint64(b[metaChecksumOffset:]) != metaSum(b) {
		return meta{}, false
	}
	return meta{
		pageSize: le.Uint32(b[8:]),
		flags:    le.Uint32(b[12:]),
		root:     le.Uint64(b[16:]),
		rootSeq:  le.Uint64(b[24:]),
		freelist: le.Uint64(b[32:]),
		hwm:      le.Uint64(b[40:]),
		txid:     le.Uint64(b[48:]),
	}, true
}

func metaSum(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b[:metaChecksumOffset])
	return h.Sum64()
}

// pageHeader is the header of every page but the meta pages' records.
type pageHeader struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
}

func (h pageHeader) encode(b []byte) {
	le.PutUint64(b[0:], h.id)
	le.PutUint16(b[8:], h.flags)
	le.PutUint16(b[10:], h.count)
	le.PutUint32(b[12:], h.overflow)
}

func decodePageHeader(b []byte) pageHeader {
	return pageHeader{
		id:       le.Uint64(b[0:]),
		flags:    le.Uint16(b[8:]),
		count:    le.Uint16(b[10:]),
		overflow: le.Uint32(b[12:]),
	}
}

// bucketHeader is the value of a bucket entry, without an inline page.
func bucketHeader(root uint64) []byte {
	b := make([]byte, bucketHeaderSize)
	le.PutUint64(b, root)
	return b
}
