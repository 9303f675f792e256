package auth

import (
	"bytes"
	"slices"
	"sort"
)

// Permission checks
//
// etcd keeps, per user, two interval trees of the key ranges its roles may
// read and write, and asks whether a request's range is covered. meshkv
// keeps, per user and kind, the union of those ranges as a sorted list of
// disjoint intervals (adjacent ones merged), built once per auth change, so a
// check is one binary search and allocates nothing.
//
// Key bounds compare as etcd's "affine" byte strings: the empty string is
// above every other (it stands for the end of the key space). A single key k
// is the interval [k, k+"\x00"). etcd's answers, which these reproduce:
//   - one key k (no range end): permitted if some interval holds k;
//   - a range [key, end) with key < end ("\x00" as end: to the end of the
//     key space): permitted if the intervals cover all of it, gaps between
//     permissions that only touch counting as covered;
//   - a range with end <= key (it holds no key): permitted if one
//     permission's interval, by itself, reaches from below end to above key.
//     This rare case scans the unmerged intervals.

// span is the half-open key interval [begin, end); a nil (empty) end is the
// end of the key space.
type span struct {
	begin []byte
	end   []byte
}

// pointSpan is the interval holding only key k.
func pointSpan(k []byte) span {
	end := make([]byte, len(k)+1)
	copy(end, k)
	return span{begin: k, end: end}
}

// affineCmp compares key bounds with the empty string above all others.
func affineCmp(a, b []byte) int {
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return 1
	case len(b) == 0:
		return -1
	}
	return bytes.Compare(a, b)
}

// mergeSpans sorts spans and merges the overlapping and adjacent ones,
// dropping empty ones. It may reorder its argument.
func mergeSpans(spans []span) []span {
	spans = slices.DeleteFunc(spans, func(s span) bool { return affineCmp(s.begin, s.end) >= 0 })
	if len(spans) == 0 {
		return nil
	}
	slices.SortFunc(spans, func(a, b span) int {
		if c := affineCmp(a.begin, b.begin); c != 0 {
			return c
		}
		return affineCmp(a.end, b.end)
	})
	out := []span{spans[0]}
	for _, s := range spans[1:] {
		last := &out[len(out)-1]
		if affineCmp(s.begin, last.end) <= 0 {
			if affineCmp(s.end, last.end) > 0 {
				last.end = s.end
			}
			continue
		}
		out = append(out, s)
	}
	return slices.Clip(out)
}

// permSet is a user's permissions of one kind: the merged intervals, and
// the intervals as granted (for empty and inverted ranges).
type permSet struct {
	read  spans
	write spans
}

// spans is the union of some intervals and the intervals themselves.
type spans struct {
	merged []span
	raw    []span
}

func newSpans(raw []span) spans {
	return spans{merged: mergeSpans(slices.Clone(raw)), raw: slices.Clip(raw)}
}

// lastAtOrBelow returns the index of the last span whose begin is at or
// below k, or -1.
func lastAtOrBelow(spans []span, k []byte) int {
	return sort.Search(len(spans), func(i int) bool { return affineCmp(spans[i].begin, k) > 0 }) - 1
}

// allows reports whether the intervals permit a request on key (end empty)
// or on the range [key, end) ("\x00" as end: to the end of the key space).
func (s spans) allows(key, end []byte) bool {
	spans := s.merged
	if len(end) == 0 {
		i := lastAtOrBelow(spans, key)
		return i >= 0 && affineCmp(key, spans[i].end) < 0
	}
	if isOpenEnded(end) {
		end = nil
	}
	if affineCmp(key, end) < 0 {
		i := lastAtOrBelow(spans, key)
		return i >= 0 && affineCmp(spans[i].end, end) >= 0
	}
	// An empty or inverted range: one interval must reach across it.
	for _, sp := range s.raw {
		if affineCmp(sp.begin, sp.end) < 0 && affineCmp(sp.begin, end) < 0 && affineCmp(sp.end, key) > 0 {
			return true
		}
	}
	return false
}
