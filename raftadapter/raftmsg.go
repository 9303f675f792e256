package raftadapter

import "go.etcd.io/raft/v3/raftpb"

// propMsg returns a MsgProp from this node carrying ents.
func (l *loop) propMsg(ents []*raftpb.Entry) *raftpb.Message {
	return &raftpb.Message{Type: raftpb.MsgProp.Enum(), From: l.idp, Entries: ents}
}

// normalEntries returns n empty normal entries backed by a single
// allocation. Their Type stays unset: EntryNormal is its default, and an
// unset field costs nothing on the wire.
func normalEntries(n int) []*raftpb.Entry {
	backing := make([]raftpb.Entry, n)
	ents := make([]*raftpb.Entry, n)
	for i := range backing {
		ents[i] = &backing[i]
	}
	return ents
}
