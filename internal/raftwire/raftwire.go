// Package raftwire encodes and decodes raft messages (raftpb.Message) for
// the wire: exactly the bytes of proto.Marshal, decoded into the same
// messages as proto.Unmarshal, but directly and with few allocations, since
// it runs for every message a member sends and receives.
//
// A decoded message's scalar fields point into one block allocated with
// the message; its entries share two blocks and the bytes of the message
// one arena. Nothing writes through those pointers (raft replaces a field's
// pointer to change it).
//
// Only the fields raft's common messages use are handled directly. A
// message with a snapshot, nested responses or unknown fields (in it or in
// an entry) goes through proto, and so does any input the decoder does not
// fully understand (unknown field numbers or wire types, malformed data):
// proto then decides, so both paths accept and reject the same inputs.
package raftwire

import (
	"errors"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Field numbers of raftpb.Message and raftpb.Entry.
const (
	msgType       protowire.Number = 1
	msgTo         protowire.Number = 2
	msgFrom       protowire.Number = 3
	msgTerm       protowire.Number = 4
	msgLogTerm    protowire.Number = 5
	msgIndex      protowire.Number = 6
	msgEntries    protowire.Number = 7
	msgCommit     protowire.Number = 8
	msgSnapshot   protowire.Number = 9
	msgReject     protowire.Number = 10
	msgRejectHint protowire.Number = 11
	msgContext    protowire.Number = 12
	msgVote       protowire.Number = 13
	msgResponses  protowire.Number = 14

	entType  protowire.Number = 1
	entTerm  protowire.Number = 2
	entIndex protowire.Number = 3
	entData  protowire.Number = 4
)

// errSlowPath means a message is left to proto.
var errSlowPath = errors.New("raft message needs the general codec")

// Size returns the encoded size of m. For a message the direct codec does
// not handle it also caches the size in m, for Append. (proto stores sizes
// inside m and its entries atomically, so goroutines that encode messages
// sharing entries may do so concurrently.)
func Size(m *raftpb.Message) int {
	if n, ok := directSize(m); ok {
		return n
	}
	return proto.Size(m)
}

// marshalCached encodes a message whose size Size has just computed and
// cached.
var marshalCached = proto.MarshalOptions{UseCachedSize: true}

// Append appends the encoding of m, whose Size was just computed as size,
// to b. It grows b at most once.
func Append(b []byte, m *raftpb.Message, size int) ([]byte, error) {
	off := len(b)
	if cap(b)-off < size {
		nb := make([]byte, off, 2*cap(b)+size)
		copy(nb, b)
		b = nb
	}
	if m.Snapshot == nil && len(m.Responses) == 0 {
		// The direct encoding is proto's minus any unknown fields, which
		// Size counted: it comes out at size exactly when there are none,
		// and the general codec takes over otherwise.
		if b = appendDirect(b, m); len(b)-off == size {
			return b, nil
		}
		b = b[:off]
	}
	b, err := marshalCached.MarshalAppend(b, m)
	if err != nil {
		return b[:off], err
	}
	if n := len(b) - off; n != size {
		return b[:off], fmt.Errorf("raftwire: encoded %d bytes, size was %d", n, size)
	}
	return b, nil
}

// Marshal returns the encoding of m, in a buffer of exactly its size.
func Marshal(m *raftpb.Message) ([]byte, error) {
	size := Size(m)
	return Append(make([]byte, 0, size), m, size)
}

// directSize returns the encoded size of m, and false if m is not for the
// direct codec.
func directSize(m *raftpb.Message) (int, bool) {
	if m.Snapshot != nil || len(m.Responses) > 0 || len(m.ProtoReflect().GetUnknown()) > 0 {
		return 0, false
	}
	n := 0
	if m.Type != nil {
		n += 1 + protowire.SizeVarint(uint64(*m.Type))
	}
	n += sizeU64(m.To) + sizeU64(m.From) + sizeU64(m.Term) + sizeU64(m.LogTerm) + sizeU64(m.Index)
	for _, e := range m.Entries {
		es, ok := entrySize(e)
		if !ok {
			return 0, false
		}
		n += 1 + protowire.SizeBytes(es)
	}
	n += sizeU64(m.Commit)
	if m.Reject != nil {
		n += 2
	}
	n += sizeU64(m.RejectHint)
	if m.Context != nil {
		n += 1 + protowire.SizeBytes(len(m.Context))
	}
	n += sizeU64(m.Vote)
	return n, true
}

func entrySize(e *raftpb.Entry) (int, bool) {
	if e == nil || len(e.ProtoReflect().GetUnknown()) > 0 {
		return 0, false
	}
	return entryFieldsSize(e), true
}

// entryFieldsSize is the encoded size of e's known fields.
func entryFieldsSize(e *raftpb.Entry) int {
	n := 0
	if e.Type != nil {
		n += 1 + protowire.SizeVarint(uint64(*e.Type))
	}
	n += sizeU64(e.Term) + sizeU64(e.Index)
	if e.Data != nil {
		n += 1 + protowire.SizeBytes(len(e.Data))
	}
	return n
}

// sizeU64 is the size of an optional uint64 field numbered below 16.
func sizeU64(p *uint64) int {
	if p == nil {
		return 0
	}
	return 1 + protowire.SizeVarint(*p)
}

// appendDirect encodes the known fields of m, which has no snapshot and no
// responses, in field-number order.
func appendDirect(b []byte, m *raftpb.Message) []byte {
	if m.Type != nil {
		b = protowire.AppendVarint(append(b, byte(msgType<<3)), uint64(*m.Type))
	}
	b = appendU64(b, msgTo, m.To)
	b = appendU64(b, msgFrom, m.From)
	b = appendU64(b, msgTerm, m.Term)
	b = appendU64(b, msgLogTerm, m.LogTerm)
	b = appendU64(b, msgIndex, m.Index)
	for _, e := range m.Entries {
		if e == nil { // proto encodes it as an empty entry
			b = append(b, bytesTag(msgEntries), 0)
			continue
		}
		es := entryFieldsSize(e)
		b = protowire.AppendVarint(append(b, bytesTag(msgEntries)), uint64(es))
		if e.Type != nil {
			b = protowire.AppendVarint(append(b, byte(entType<<3)), uint64(*e.Type))
		}
		b = appendU64(b, entTerm, e.Term)
		b = appendU64(b, entIndex, e.Index)
		if e.Data != nil {
			b = protowire.AppendBytes(append(b, bytesTag(entData)), e.Data)
		}
	}
	b = appendU64(b, msgCommit, m.Commit)
	if m.Reject != nil {
		b = append(b, byte(msgReject<<3), byte(protowire.EncodeBool(*m.Reject)))
	}
	b = appendU64(b, msgRejectHint, m.RejectHint)
	if m.Context != nil {
		b = protowire.AppendBytes(append(b, bytesTag(msgContext)), m.Context)
	}
	return appendU64(b, msgVote, m.Vote)
}

func appendU64(b []byte, num protowire.Number, p *uint64) []byte {
	if p == nil {
		return b
	}
	return protowire.AppendVarint(append(b, byte(num<<3)), *p)
}

// Unmarshal decodes one raft message. The message does not alias data.
func Unmarshal(data []byte) (*raftpb.Message, error) {
	if m, err := decodeDirect(data); err == nil {
		return m, nil
	}
	m := new(raftpb.Message)
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, err
	}
	return m, nil
}

// msgBlock is a decoded message with the storage of its scalar fields.
type msgBlock struct {
	m          raftpb.Message
	typ        raftpb.MessageType
	reject     bool
	to, from   uint64
	term       uint64
	logTerm    uint64
	index      uint64
	commit     uint64
	rejectHint uint64
	vote       uint64
}

// entryBlock is a decoded entry with the storage of its scalar fields.
type entryBlock struct {
	e           raftpb.Entry
	typ         raftpb.EntryType
	term, index uint64
}

// decodeDirect decodes data if the direct codec understands all of it, in
// two passes: the first checks the input and counts entries and bytes, the
// second fills blocks allocated to size. It returns errSlowPath otherwise.
func decodeDirect(data []byte) (*raftpb.Message, error) {
	entries, arena, ok := scanMessage(data)
	if !ok {
		return nil, errSlowPath
	}
	blk := new(msgBlock)
	m := &blk.m
	var ents []entryBlock
	if entries > 0 {
		ents = make([]entryBlock, entries)
		m.Entries = make([]*raftpb.Entry, entries)
		for i := range ents {
			m.Entries[i] = &ents[i].e
		}
	}
	buf := make([]byte, 0, arena)
	next := 0
	for b := data; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		if typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			b = b[n:]
			if num == msgContext {
				m.Context, buf = copyBytes(buf, v)
				continue
			}
			buf = decodeEntry(&ents[next], v, buf)
			next++
			continue
		}
		v, n := protowire.ConsumeVarint(b)
		b = b[n:]
		switch num {
		case msgType:
			blk.typ, m.Type = raftpb.MessageType(int32(v)), &blk.typ
		case msgTo:
			blk.to, m.To = v, &blk.to
		case msgFrom:
			blk.from, m.From = v, &blk.from
		case msgTerm:
			blk.term, m.Term = v, &blk.term
		case msgLogTerm:
			blk.logTerm, m.LogTerm = v, &blk.logTerm
		case msgIndex:
			blk.index, m.Index = v, &blk.index
		case msgCommit:
			blk.commit, m.Commit = v, &blk.commit
		case msgReject:
			blk.reject, m.Reject = protowire.DecodeBool(v), &blk.reject
		case msgRejectHint:
			blk.rejectHint, m.RejectHint = v, &blk.rejectHint
		case msgVote:
			blk.vote, m.Vote = v, &blk.vote
		}
	}
	return m, nil
}

// decodeEntry fills eb from data, which scanEntry accepted, copying its
// bytes into buf.
func decodeEntry(eb *entryBlock, data []byte, buf []byte) []byte {
	e := &eb.e
	for b := data; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		if typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			b = b[n:]
			e.Data, buf = copyBytes(buf, v)
			continue
		}
		v, n := protowire.ConsumeVarint(b)
		b = b[n:]
		switch num {
		case entType:
			eb.typ, e.Type = raftpb.EntryType(int32(v)), &eb.typ
		case entTerm:
			eb.term, e.Term = v, &eb.term
		case entIndex:
			eb.index, e.Index = v, &eb.index
		}
	}
	return buf
}

// copyBytes appends v to buf and returns the copy, capped so that appending
// to it cannot reach the next one. A present but empty field decodes to an
// empty, non-nil slice, as with proto.
func copyBytes(buf, v []byte) ([]byte, []byte) {
	off := len(buf)
	buf = append(buf, v...)
	return buf[off:len(buf):len(buf)], buf
}

// scanMessage checks that data holds only fields the direct codec decodes,
// well formed, and returns the number of entries and the total length of
// the bytes fields.
func scanMessage(data []byte) (entries, arena int, ok bool) {
	for b := data; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, false
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && (num >= msgType && num <= msgIndex || num == msgCommit ||
			num == msgReject || num == msgRejectHint || num == msgVote):
			_, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, 0, false
			}
			b = b[n:]
		case typ == protowire.BytesType && (num == msgEntries || num == msgContext):
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, 0, false
			}
			b = b[n:]
			if num == msgContext {
				arena += len(v)
				continue
			}
			size, ok := scanEntry(v)
			if !ok {
				return 0, 0, false
			}
			entries++
			arena += size
		default:
			return 0, 0, false
		}
	}
	return entries, arena, true
}

// scanEntry checks an encoded entry like scanMessage and returns the length
// of its data.
func scanEntry(data []byte) (int, bool) {
	size := 0
	for b := data; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, false
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && num >= entType && num <= entIndex:
			_, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, false
			}
			b = b[n:]
		case typ == protowire.BytesType && num == entData:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, false
			}
			b = b[n:]
			size += len(v)
		default:
			return 0, false
		}
	}
	return size, true
}

// bytesTag is the one-byte tag of a length-delimited field numbered below 16.
func bytesTag(num protowire.Number) byte {
	return byte(num)<<3 | byte(protowire.BytesType)
}
