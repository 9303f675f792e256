package raftadapter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
)

// The removed set is replicated state: every member id that was in the
// configuration and left it through an applied change. Ids are never
// reused, so the set only grows. Members answer raft traffic and
// membership queries from removed ids with what the set says; snapshots
// carry it, so a member restored from one knows it too.

// noteRemoved adds to the removed set every id that was a member (in any
// part of a possibly joint configuration) before an applied change and is
// none after it. A voter removed with joint consensus leaves at the end of
// the joint phase, when the joint configuration is left.
func (l *loop) noteRemoved(before, after *raftpb.ConfState) {
	now := confMembers(after)
	added := false
	for id := range confMembers(before) {
		if _, ok := now[id]; !ok {
			if _, ok := l.removedIDs[id]; !ok {
				l.removedIDs[id] = struct{}{}
				added = true
			}
		}
	}
	if added {
		l.publishRemoved()
	}
}

// confMembers is every id in cs.
func confMembers(cs *raftpb.ConfState) map[uint64]struct{} {
	out := map[uint64]struct{}{}
	for _, list := range [][]uint64{cs.GetVoters(), cs.GetLearners(), cs.GetVotersOutgoing(), cs.GetLearnersNext()} {
		for _, id := range list {
			out[id] = struct{}{}
		}
	}
	return out
}

// publishRemoved hands a copy of the removed set to WasRemoved's readers.
func (l *loop) publishRemoved() {
	cp := maps.Clone(l.removedIDs)
	l.n.removedIDs.Store(&cp)
}

// WasRemoved reports whether id left this node's applied configuration
// through a membership change (or was removed by the snapshot this node
// restored). It never blocks and is cheap.
func (n *Node) WasRemoved(id uint64) bool {
	_, ok := (*n.removedIDs.Load())[id]
	return ok
}

// maxRemoved bounds the removed set decoded from a snapshot, against
// hostile sizes; a cluster would need as many member restarts.
const maxRemoved = 1 << 22

var errBadRemoved = errors.New("bad removed set")

// appendRemoved encodes the set: a uvarint count, then the ids as 8 bytes
// big endian each, sorted.
func appendRemoved(b []byte, set map[uint64]struct{}) []byte {
	b = binary.AppendUvarint(b, uint64(len(set)))
	for _, id := range slices.Sorted(maps.Keys(set)) {
		b = binary.BigEndian.AppendUint64(b, id)
	}
	return b
}

// decodeRemoved decodes a set encoded by appendRemoved from the start of
// data and returns the rest.
func decodeRemoved(data []byte) (map[uint64]struct{}, []byte, error) {
	n, k := binary.Uvarint(data)
	if k <= 0 || n > maxRemoved || n > uint64(len(data)-k)/8 {
		return nil, nil, fmt.Errorf("%w: count", errBadRemoved)
	}
	data = data[k:]
	set := make(map[uint64]struct{}, n)
	for i := range n {
		id := binary.BigEndian.Uint64(data[i*8:])
		if id == 0 {
			return nil, nil, fmt.Errorf("%w: id 0", errBadRemoved)
		}
		set[id] = struct{}{}
	}
	if uint64(len(set)) != n {
		return nil, nil, fmt.Errorf("%w: duplicate ids", errBadRemoved)
	}
	return set, data[n*8:], nil
}
