package meshtransport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/weaveworks/mesh"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/internal/raftwire"
)

// The wire envelope. Every unicast meshtransport sends is one frame:
//
//	offset size field
//	0      1    format version (wireVersion)
//	1      1    kind
//	2      8    cluster id (0 = not yet known)
//	10     8    sender raft id (0 = none yet)
//	18     8    receiver raft id (0 = none / not raft traffic)
//	26     8    sequence (meaning depends on kind)
//	34     ...  body
//
// Integers are big-endian. Bodies by kind:
//
//	kindRaft       repeated { uvarint length, raftpb.Message (protobuf encoding) }; seq = frame number
//	kindChunk      index u32, count u32, total u64, chunk crc32c u32, payload crc32c u32, data;
//	               seq = transfer id (unique per sending peer)
//	kindChunkAck   status u8 (ackOK | ackRejected); seq = transfer id
//	kindProbe      empty; seq = probe number
//	kindProbeReply uvarint n, n × u64 mesh peer names the replier probes live; seq = probe number echoed
//	kindRelay      origin peer name u64, final destination peer name u64, inner frame (never a relay)
const (
	wireVersion = 1
	headerLen   = 34
	chunkHdrLen = 24
	relayHdrLen = 16
)

// frameKind says what a frame's body holds.
type frameKind uint8

const (
	kindRaft frameKind = iota + 1
	kindChunk
	kindChunkAck
	kindProbe
	kindProbeReply
	kindRelay
)

func (k frameKind) String() string {
	switch k {
	case kindRaft:
		return "raft"
	case kindChunk:
		return "chunk"
	case kindChunkAck:
		return "chunk-ack"
	case kindProbe:
		return "probe"
	case kindProbeReply:
		return "probe-reply"
	case kindRelay:
		return "relay"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Chunk acknowledgement statuses.
const (
	ackOK       = 1 // reassembled, verified and delivered
	ackRejected = 2 // corrupt or too large: do not retry the same bytes
)

// errMalformed is wrapped by every decoding error.
var errMalformed = errors.New("malformed frame")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is the fixed part of every frame.
type header struct {
	kind    frameKind
	cluster uint64
	from    uint64
	to      uint64
	seq     uint64
}

func appendHeader(b []byte, h header) []byte {
	b = append(b, wireVersion, byte(h.kind))
	b = binary.BigEndian.AppendUint64(b, h.cluster)
	b = binary.BigEndian.AppendUint64(b, h.from)
	b = binary.BigEndian.AppendUint64(b, h.to)
	return binary.BigEndian.AppendUint64(b, h.seq)
}

// decodeHeader splits a frame into its header and body.
func decodeHeader(frame []byte) (header, []byte, error) {
	if len(frame) < headerLen {
		return header{}, nil, fmt.Errorf("%w: %d bytes, shorter than a header", errMalformed, len(frame))
	}
	if frame[0] != wireVersion {
		return header{}, nil, fmt.Errorf("%w: format version %d, want %d", errMalformed, frame[0], wireVersion)
	}
	h := header{
		kind:    frameKind(frame[1]),
		cluster: binary.BigEndian.Uint64(frame[2:]),
		from:    binary.BigEndian.Uint64(frame[10:]),
		to:      binary.BigEndian.Uint64(frame[18:]),
		seq:     binary.BigEndian.Uint64(frame[26:]),
	}
	if h.kind < kindRaft || h.kind > kindRelay {
		return header{}, nil, fmt.Errorf("%w: unknown kind %d", errMalformed, frame[1])
	}
	return h, frame[headerLen:], nil
}

// raftEncodedLen is the number of bytes m takes inside a kindRaft body.
func raftEncodedLen(size int) int {
	return uvarintLen(uint64(size)) + size
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// appendRaftMsg appends m (whose raftwire.Size is size) to a kindRaft body,
// length first, encoding in place.
func appendRaftMsg(b []byte, m *raftpb.Message, size int) ([]byte, error) {
	b = binary.AppendUvarint(b, uint64(size))
	off := len(b)
	out, err := raftwire.Append(b, m, size)
	if err != nil {
		return b[:off], err
	}
	return out, nil
}

// nextRaftMsg splits the first encoded message off a kindRaft body.
func nextRaftMsg(body []byte) (msg, rest []byte, err error) {
	n, k := binary.Uvarint(body)
	if k <= 0 || n > uint64(len(body)-k) {
		return nil, nil, fmt.Errorf("%w: bad message length in raft batch", errMalformed)
	}
	end := k + int(n)
	return body[k:end], body[end:], nil
}

// chunkHeader describes one chunk of a transfer.
type chunkHeader struct {
	index, count uint32
	total        uint64 // length of the whole payload
	crc          uint32 // crc32c of this chunk's data
	sum          uint32 // crc32c of the whole payload
}

func appendChunk(b []byte, ch chunkHeader, data []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, ch.index)
	b = binary.BigEndian.AppendUint32(b, ch.count)
	b = binary.BigEndian.AppendUint64(b, ch.total)
	b = binary.BigEndian.AppendUint32(b, ch.crc)
	b = binary.BigEndian.AppendUint32(b, ch.sum)
	return append(b, data...)
}

// decodeChunk parses and verifies a kindChunk body.
func decodeChunk(body []byte) (chunkHeader, []byte, error) {
	if len(body) < chunkHdrLen {
		return chunkHeader{}, nil, fmt.Errorf("%w: short chunk", errMalformed)
	}
	ch := chunkHeader{
		index: binary.BigEndian.Uint32(body[0:]),
		count: binary.BigEndian.Uint32(body[4:]),
		total: binary.BigEndian.Uint64(body[8:]),
		crc:   binary.BigEndian.Uint32(body[16:]),
		sum:   binary.BigEndian.Uint32(body[20:]),
	}
	data := body[chunkHdrLen:]
	switch {
	case ch.count == 0 || ch.index >= ch.count:
		return ch, nil, fmt.Errorf("%w: chunk %d of %d", errMalformed, ch.index, ch.count)
	case ch.total == 0 || ch.total > MaxTransfer:
		return ch, nil, fmt.Errorf("%w: transfer size %d out of range", errMalformed, ch.total)
	case uint64(ch.count) != (ch.total+ChunkSize-1)/ChunkSize:
		return ch, nil, fmt.Errorf("%w: %d chunks for %d bytes", errMalformed, ch.count, ch.total)
	case uint64(len(data)) != chunkLen(ch.total, ch.index):
		return ch, nil, fmt.Errorf("%w: chunk %d has %d bytes, want %d", errMalformed, ch.index, len(data), chunkLen(ch.total, ch.index))
	case crc32.Checksum(data, castagnoli) != ch.crc:
		return ch, nil, fmt.Errorf("%w: chunk %d checksum mismatch", errMalformed, ch.index)
	}
	return ch, data, nil
}

// chunkLen is the data length of chunk i of a payload of total bytes.
func chunkLen(total uint64, i uint32) uint64 {
	start := uint64(i) * ChunkSize
	if start >= total {
		return 0
	}
	return min(total-start, ChunkSize)
}

func appendLiveSet(b []byte, names []mesh.PeerName) []byte {
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, n := range names {
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return b
}

func decodeLiveSet(body []byte) ([]mesh.PeerName, error) {
	n, k := binary.Uvarint(body)
	if k <= 0 || n > uint64(len(body)-k)/8 || uint64(len(body)-k) != n*8 {
		return nil, fmt.Errorf("%w: bad live set", errMalformed)
	}
	body = body[k:]
	names := make([]mesh.PeerName, n)
	for i := range names {
		names[i] = mesh.PeerName(binary.BigEndian.Uint64(body[8*i:]))
	}
	return names, nil
}

func appendRelayHeader(b []byte, origin, dst mesh.PeerName) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(origin))
	return binary.BigEndian.AppendUint64(b, uint64(dst))
}

// decodeRelay parses a kindRelay body. The inner frame must itself be valid
// and must not be a relay (one hop only).
func decodeRelay(body []byte) (origin, dst mesh.PeerName, inner []byte, ih header, err error) {
	if len(body) < relayHdrLen {
		return 0, 0, nil, header{}, fmt.Errorf("%w: short relay", errMalformed)
	}
	origin = mesh.PeerName(binary.BigEndian.Uint64(body[0:]))
	dst = mesh.PeerName(binary.BigEndian.Uint64(body[8:]))
	inner = body[relayHdrLen:]
	ih, _, err = decodeHeader(inner)
	if err != nil {
		return 0, 0, nil, header{}, err
	}
	if ih.kind == kindRelay {
		return 0, 0, nil, header{}, fmt.Errorf("%w: relay inside a relay", errMalformed)
	}
	return origin, dst, inner, ih, nil
}
