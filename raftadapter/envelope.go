package raftadapter

import "encoding/binary"

// Every payload this package puts into the raft log (normal entries and the
// Context of membership changes) is wrapped in an envelope:
//
//	byte 0      envelopeVersion
//	bytes 1-8   proposer raft id (big endian)
//	bytes 9-16  term the proposer was in when it proposed
//	bytes 17-24 proposer-local sequence number (request id)
//	bytes 25-32 low watermark: the smallest sequence number the proposer
//	            still waited for when it stamped the entry (at most seq;
//	            0 in membership changes)
//	bytes 33-   the caller's payload
//
// The (proposer, seq) pair is unique cluster-wide because raft ids are never
// reused, so only the proposing member's waiter is ever woken. The term makes
// lost proposals detectable: an entry is applied only if raft appended it in
// the term it was proposed in; otherwise every member skips it. A re-proposal
// repeats the envelope byte for byte; the pair and the low watermark let
// every member apply only the first copy (see dedup).
const (
	envelopeVersion   = 2
	envelopeHeaderLen = 33
)

// envelope is the decoded header of a log payload.
type envelope struct {
	proposer uint64
	term     uint64
	seq      uint64
	low      uint64
}

// newEnvelopeBuf allocates a buffer holding payload after room for the header.
// The header is written later with stamp, once the term is known.
func newEnvelopeBuf(payload []byte) []byte {
	buf := make([]byte, envelopeHeaderLen+len(payload))
	copy(buf[envelopeHeaderLen:], payload)
	return buf
}

// stamp writes e into the header of buf, which came from newEnvelopeBuf.
func (e envelope) stamp(buf []byte) {
	buf[0] = envelopeVersion
	binary.BigEndian.PutUint64(buf[1:9], e.proposer)
	binary.BigEndian.PutUint64(buf[9:17], e.term)
	binary.BigEndian.PutUint64(buf[17:25], e.seq)
	binary.BigEndian.PutUint64(buf[25:33], e.low)
}

// parseEnvelope splits data into header and payload. ok is false when data
// does not carry an envelope (raft's own empty entries, bootstrap entries).
func parseEnvelope(data []byte) (e envelope, payload []byte, ok bool) {
	if len(data) < envelopeHeaderLen || data[0] != envelopeVersion {
		return envelope{}, nil, false
	}
	e.proposer = binary.BigEndian.Uint64(data[1:9])
	e.term = binary.BigEndian.Uint64(data[9:17])
	e.seq = binary.BigEndian.Uint64(data[17:25])
	e.low = binary.BigEndian.Uint64(data[25:33])
	if e.proposer == 0 || e.term == 0 || e.seq == 0 || e.low > e.seq {
		return envelope{}, nil, false
	}
	return e, data[envelopeHeaderLen:], true
}
