package raftadapter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// dedup is the replicated at-most-once state: it decides, from the log
// alone, whether a normal entry is the first copy of its proposal that
// passes the term rule. A follower re-proposes a forwarded proposal that
// stays unapplied (the forwarded message may have been lost), using the very
// same envelope bytes, so the log may hold two copies of one (proposer, seq)
// pair; every member applies the first and skips the rest.
//
// Why the state is exact and bounded:
//
//   - Only copies appended in the term they were proposed in are applied
//     (envelope.term == entry term); every copy of a proposal carries the same
//     term. So the state only needs to cover the term of the entries being
//     applied, and it is cleared when the first entry of a later term is
//     applied: no copy of an earlier term's proposal can be applied any more.
//   - Within a term, per proposer, seqs below floor count as done, and
//     applied holds the seqs at or above floor applied so far. floor is the
//     highest low watermark carried by the proposer's entries: low is the
//     smallest seq the proposer still waited for when it stamped the entry.
//     Seqs are handed out in increasing order by the proposer's raft loop, so
//     every seq below low had been resolved there before: either it was
//     applied (so a later copy is a duplicate), or its caller was told it
//     will never apply (ErrLeaderChanged: the term rule already skips it) or
//     that its outcome is unknown (timeout, cancel, snapshot, stop), in which
//     case skipping a late first copy is allowed. A seq whose caller still
//     waits is never below any floor, so a first copy is never skipped while
//     anyone waits for it.
//   - Normally floor trails the newest seqs by the proposer's concurrency,
//     so applied stays small; it grows only while one proposal stays
//     pending in its term, which re-proposal and the caller's context bound.
//
// The state travels inside raftadapter's snapshots, so a member restored
// from one decides exactly like members that applied the log.
type dedup struct {
	term      uint64 // term of the entries the state covers
	proposers map[uint64]*proposerSeqs
}

// proposerSeqs is one proposer's share of the dedup state.
type proposerSeqs struct {
	floor uint64   // every seq below floor counts as applied
	seqs  []uint64 // seqs[off:] are the applied seqs >= floor, ascending
	off   int      // seqs[:off] fell below floor; reclaimed lazily
}

// applied returns the applied seqs at or above floor, ascending.
func (p *proposerSeqs) applied() []uint64 { return p.seqs[p.off:] }

func newDedup() *dedup {
	return &dedup{proposers: make(map[uint64]*proposerSeqs)}
}

// startTerm is called before applying an entry of term; a later term than
// the state covers clears it.
func (d *dedup) startTerm(term uint64) {
	if term > d.term {
		d.term = term
		clear(d.proposers)
	}
}

// admit reports whether the entry carrying e, appended in d.term, is the
// first copy of its proposal, and records it. It also advances the
// proposer's floor to e.low.
func (d *dedup) admit(e envelope) bool {
	p := d.proposers[e.proposer]
	if p == nil {
		p = &proposerSeqs{}
		d.proposers[e.proposer] = p
	}
	first := p.insert(e.seq)
	p.raiseFloor(e.low)
	return first
}

// insert adds seq unless it is below floor or already present; it reports
// whether it was added.
func (p *proposerSeqs) insert(seq uint64) bool {
	if seq < p.floor {
		return false
	}
	if n := len(p.seqs); n == p.off || seq > p.seqs[n-1] {
		p.seqs = append(p.seqs, seq) // the usual case: seqs arrive mostly in order
		return true
	}
	i, found := slices.BinarySearch(p.applied(), seq)
	if found {
		return false
	}
	p.seqs = slices.Insert(p.seqs, p.off+i, seq)
	return true
}

// raiseFloor moves floor up to low and forgets the seqs below it. Usually a
// few seqs drop out at the front, so they are skipped over and the space is
// reclaimed once it makes up half the slice: amortized O(1) per entry.
func (p *proposerSeqs) raiseFloor(low uint64) {
	if low <= p.floor {
		return
	}
	p.floor = low
	for p.off < len(p.seqs) && p.seqs[p.off] < low {
		p.off++
	}
	switch {
	case p.off == len(p.seqs):
		p.seqs, p.off = p.seqs[:0], 0
	case p.off >= 32 && 2*p.off >= len(p.seqs):
		n := copy(p.seqs, p.seqs[p.off:])
		p.seqs, p.off = p.seqs[:n], 0
	}
}

// Encoding, used inside snapshots (all numbers uvarint):
//
//	term, proposer count, then per proposer in increasing id order:
//	id, floor, seq count, seqs as deltas (the first from floor, each next
//	from the previous seq; all but the first are at least 1)
func (d *dedup) appendTo(b []byte) []byte {
	b = binary.AppendUvarint(b, d.term)
	b = binary.AppendUvarint(b, uint64(len(d.proposers)))
	for _, id := range slices.Sorted(maps.Keys(d.proposers)) {
		p := d.proposers[id]
		b = binary.AppendUvarint(b, id)
		b = binary.AppendUvarint(b, p.floor)
		b = binary.AppendUvarint(b, uint64(len(p.applied())))
		prev := p.floor
		for _, s := range p.applied() {
			b = binary.AppendUvarint(b, s-prev)
			prev = s
		}
	}
	return b
}

// decodeDedup parses what appendTo wrote; it must consume all of b.
func decodeDedup(b []byte) (*dedup, error) {
	r := uvarintReader{b: b}
	d := newDedup()
	d.term = r.next()
	for n := r.count(); n > 0 && r.err == nil; n-- {
		id := r.next()
		p := &proposerSeqs{floor: r.next()}
		cnt := r.count()
		if r.err != nil {
			break
		}
		if id == 0 || d.proposers[id] != nil {
			return nil, fmt.Errorf("bad or repeated proposer id %d", id)
		}
		p.seqs = make([]uint64, 0, cnt)
		prev := p.floor
		for i := uint64(0); i < cnt && r.err == nil; i++ {
			delta := r.next()
			if i > 0 && delta == 0 {
				return nil, fmt.Errorf("proposer %x: sequence numbers not increasing", id)
			}
			if prev+delta < prev {
				return nil, fmt.Errorf("proposer %x: sequence number overflows", id)
			}
			prev += delta
			p.seqs = append(p.seqs, prev)
		}
		d.proposers[id] = p
	}
	if r.err == nil && len(r.b) > 0 {
		r.err = errors.New("trailing bytes")
	}
	if r.err != nil {
		return nil, r.err
	}
	return d, nil
}

// uvarintReader reads uvarints, remembering the first error.
type uvarintReader struct {
	b   []byte
	err error
}

func (r *uvarintReader) next() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated or oversized number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads an element count; each element takes at least one byte.
func (r *uvarintReader) count() uint64 {
	n := r.next()
	if r.err == nil && n > uint64(len(r.b)) {
		r.err = fmt.Errorf("count %d exceeds the %d bytes left", n, len(r.b))
	}
	return n
}
