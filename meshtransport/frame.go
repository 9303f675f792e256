package meshtransport

import (
	"encoding/binary"
	"errors"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/internal/raftwire"
)

// Frames. Everything the transport sends to a peer is one frame: a link
// datagram on the direct path, or the plaintext of a sealed mesh unicast on
// the relayed path. Integers are big-endian.
//
//	offset size field
//	0      1    format version (frameVersion)
//	1      1    kind
//	2      8    cluster id (0 = not yet known)
//	10     8    sender raft id: must be RaftIDOf(the authenticated sender key)
//	18     8    receiver raft id: must be ours
//	26     8    sequence (meaning depends on kind)
//	34     ...  body
//
// Bodies by kind:
//
//	kindRaft        repeated { uvarint length, raftpb.Message (protobuf) }; seq unused
//	kindChunk       index u32, count u32, total u64, crc32c of the whole payload u32, data;
//	                seq = transfer id (increasing per sender)
//	kindChunkAck    status u8, chunks received in order u32; seq = transfer id
//	kindProbe       empty; seq = probe number
//	kindProbeReply  empty; seq = the probe number answered
//	kindRemoved     term u64, applied index u64
//	kindQuery       empty; seq = query nonce
//	kindReply       status u8, term u64, leader raft id u64, applied index u64; seq = query nonce
//	kindJoin        empty
const (
	frameVersion = 2
	headerLen    = 34
	chunkHdrLen  = 20
	chunkAckLen  = 5
	removedLen   = 16
	replyLen     = 25
)

// frameKind says what a frame's body holds.
type frameKind uint8

const (
	kindRaft frameKind = iota + 1
	kindChunk
	kindChunkAck
	kindProbe
	kindProbeReply
	kindRemoved
	kindQuery
	kindReply
	kindJoin
	numKinds
)

var kindNames = [...]string{"", "raft", "chunk", "chunk-ack", "probe", "probe-reply", "removed", "query", "reply", "join"}

func (k frameKind) String() string {
	if k > 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Chunk acknowledgement statuses.
const (
	ackProgress = 1 // chunks received in order so far; more expected
	ackDone     = 2 // reassembled, verified and delivered
	ackRejected = 3 // corrupt, too large, or no room: do not retry these bytes
)

// errMalformed is wrapped by every decoding error.
var errMalformed = errors.New("malformed frame")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
}

// header is the fixed part of every frame.
type header struct {
	kind    frameKind
	cluster uint64
	from    uint64
	to      uint64
	seq     uint64
}

func appendHeader(b []byte, h header) []byte {
	b = append(b, frameVersion, byte(h.kind))
	b = binary.BigEndian.AppendUint64(b, h.cluster)
	b = binary.BigEndian.AppendUint64(b, h.from)
	b = binary.BigEndian.AppendUint64(b, h.to)
	return binary.BigEndian.AppendUint64(b, h.seq)
}

// decodeHeader splits a frame into its header and body.
func decodeHeader(frame []byte) (header, []byte, error) {
	if len(frame) < headerLen {
		return header{}, nil, malformed("%d bytes, shorter than a header", len(frame))
	}
	if frame[0] != frameVersion {
		return header{}, nil, malformed("format version %d, want %d", frame[0], frameVersion)
	}
	h := header{
		kind:    frameKind(frame[1]),
		cluster: binary.BigEndian.Uint64(frame[2:]),
		from:    binary.BigEndian.Uint64(frame[10:]),
		to:      binary.BigEndian.Uint64(frame[18:]),
		seq:     binary.BigEndian.Uint64(frame[26:]),
	}
	if h.kind < kindRaft || h.kind >= numKinds {
		return header{}, nil, malformed("unknown kind %d", frame[1])
	}
	return h, frame[headerLen:], nil
}

// raftEncodedLen is the number of bytes a message of size bytes takes
// inside a kindRaft body.
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

// appendRaftMsg appends m (whose raftwire.Size is size) to a kindRaft body.
func appendRaftMsg(b []byte, m *raftpb.Message, size int) ([]byte, error) {
	b = binary.AppendUvarint(b, uint64(size))
	off := len(b)
	out, err := raftwire.Append(b, m, size)
	if err != nil {
		return b[:off-uvarintLen(uint64(size))], err
	}
	return out, nil
}

// nextRaftMsg splits the first encoded message off a kindRaft body.
func nextRaftMsg(body []byte) (msg, rest []byte, err error) {
	n, k := binary.Uvarint(body)
	if k <= 0 || n > uint64(len(body)-k) {
		return nil, nil, malformed("bad message length in raft batch")
	}
	end := k + int(n)
	return body[k:end], body[end:], nil
}

// chunkHeader describes one chunk of a transfer.
type chunkHeader struct {
	index, count uint32
	total        uint64 // length of the whole payload
	sum          uint32 // crc32c of the whole payload
}

func appendChunk(b []byte, ch chunkHeader, data []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, ch.index)
	b = binary.BigEndian.AppendUint32(b, ch.count)
	b = binary.BigEndian.AppendUint64(b, ch.total)
	b = binary.BigEndian.AppendUint32(b, ch.sum)
	return append(b, data...)
}

// decodeChunk parses a kindChunk body and checks that the chunk is
// consistent with the transfer it claims to belong to.
func decodeChunk(body []byte, maxTransfer int64) (chunkHeader, []byte, error) {
	if len(body) < chunkHdrLen {
		return chunkHeader{}, nil, malformed("short chunk")
	}
	ch := chunkHeader{
		index: binary.BigEndian.Uint32(body[0:]),
		count: binary.BigEndian.Uint32(body[4:]),
		total: binary.BigEndian.Uint64(body[8:]),
		sum:   binary.BigEndian.Uint32(body[16:]),
	}
	data := body[chunkHdrLen:]
	switch {
	case ch.count == 0 || ch.index >= ch.count:
		return ch, nil, malformed("chunk %d of %d", ch.index, ch.count)
	case ch.total == 0 || ch.total > uint64(maxTransfer):
		return ch, nil, malformed("transfer size %d out of range", ch.total)
	case uint64(ch.count) != (ch.total+ChunkSize-1)/ChunkSize:
		return ch, nil, malformed("%d chunks for %d bytes", ch.count, ch.total)
	case uint64(len(data)) != chunkLen(ch.total, ch.index):
		return ch, nil, malformed("chunk %d has %d bytes, want %d", ch.index, len(data), chunkLen(ch.total, ch.index))
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

// chunkAck is the body of a kindChunkAck.
type chunkAck struct {
	status byte
	next   uint32 // chunks received in order
}

func appendChunkAck(b []byte, a chunkAck) []byte {
	b = append(b, a.status)
	return binary.BigEndian.AppendUint32(b, a.next)
}

func decodeChunkAck(body []byte) (chunkAck, error) {
	if len(body) != chunkAckLen {
		return chunkAck{}, malformed("chunk ack of %d bytes", len(body))
	}
	a := chunkAck{status: body[0], next: binary.BigEndian.Uint32(body[1:])}
	if a.status < ackProgress || a.status > ackRejected {
		return chunkAck{}, malformed("chunk ack status %d", a.status)
	}
	return a, nil
}

// memberBody is the body of the membership kinds.
type memberBody struct {
	term, index uint64
	status      MemberStatus
	leader      uint64
}

func appendMemberBody(b []byte, k frameKind, mb memberBody) []byte {
	switch k {
	case kindRemoved:
		b = binary.BigEndian.AppendUint64(b, mb.term)
		b = binary.BigEndian.AppendUint64(b, mb.index)
	case kindReply:
		b = append(b, byte(mb.status))
		b = binary.BigEndian.AppendUint64(b, mb.term)
		b = binary.BigEndian.AppendUint64(b, mb.leader)
		b = binary.BigEndian.AppendUint64(b, mb.index)
	}
	return b
}

func decodeMemberBody(k frameKind, body []byte) (memberBody, error) {
	var mb memberBody
	switch k {
	case kindRemoved:
		if len(body) != removedLen {
			return mb, malformed("removal notice of %d bytes", len(body))
		}
		mb.term = binary.BigEndian.Uint64(body)
		mb.index = binary.BigEndian.Uint64(body[8:])
	case kindReply:
		if len(body) != replyLen {
			return mb, malformed("membership reply of %d bytes", len(body))
		}
		mb.status = MemberStatus(body[0])
		if mb.status > StatusRemoved {
			return mb, malformed("membership status %d", body[0])
		}
		mb.term = binary.BigEndian.Uint64(body[1:])
		mb.leader = binary.BigEndian.Uint64(body[9:])
		mb.index = binary.BigEndian.Uint64(body[17:])
	case kindQuery, kindJoin, kindProbe, kindProbeReply:
		if len(body) != 0 {
			return mb, malformed("%v with a body of %d bytes", k, len(body))
		}
	}
	return mb, nil
}
