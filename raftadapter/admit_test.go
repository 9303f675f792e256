package raftadapter_test

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/raftadapter/raftadaptertest"
)

// TestForgedMessagesNeverReachRaft steps messages into a follower that a
// hostile peer (one that the transport let through: each claims the
// sender's own id) could send: a second leader in the current term, a
// commit beyond the log, entries that do not follow each other, a snapshot
// that does not decode, a non-member raising the term with a snapshot while
// the leader is active. Raft would follow, panic or stop on each; the
// loop refuses them all, keeps its data and keeps serving.
func TestForgedMessagesNeverReachRaft(t *testing.T) {
	c := newCluster(t, 3, raftadaptertest.NetworkConfig{}, nil)
	lead := c.waitLeader()
	c.put(lead, "k", "v1")
	c.waitFor("converged", 50, func() bool { return c.converged(c.ids...) })
	f := c.others(lead)[0]
	other := c.others(lead, f)[0]
	st := c.nodes[f].Status()
	term, commit := st.Term, st.CommitIndex
	ent := func(index, term uint64) *raftpb.Entry {
		return &raftpb.Entry{Index: new(index), Term: new(term), Data: raftadaptertest.Put("k", "forged")}
	}
	snap := func(index, term uint64, data []byte) *raftpb.Snapshot {
		return &raftpb.Snapshot{Data: data, Metadata: &raftpb.SnapshotMetadata{
			Index: new(index), Term: new(term), ConfState: &raftpb.ConfState{Voters: []uint64{f, 99}}}}
	}
	forged := map[string]*raftpb.Message{
		"second leader in the term": {Type: raftpb.MsgApp.Enum(), From: new(other), To: new(f), Term: new(term),
			Index: new(commit), LogTerm: new(term), Entries: []*raftpb.Entry{ent(commit+1, term)}, Commit: new(commit + 1)},
		"commit beyond the log": {Type: raftpb.MsgHeartbeat.Enum(), From: new(lead), To: new(f), Term: new(term),
			Commit: new(commit + 1<<20)},
		"entries out of order": {Type: raftpb.MsgApp.Enum(), From: new(lead), To: new(f), Term: new(term),
			Index: new(commit), LogTerm: new(term), Entries: []*raftpb.Entry{ent(1, term)}},
		"undecodable snapshot": {Type: raftpb.MsgSnap.Enum(), From: new(lead), To: new(f), Term: new(term),
			Snapshot: snap(commit+100, term, []byte("not a snapshot"))},
		"non-member raising the term": {Type: raftpb.MsgSnap.Enum(), From: new(uint64(99)), To: new(f), Term: new(term + 5),
			Snapshot: snap(commit+100, term+5, []byte("anything"))},
		"non-member timeout-now": {Type: raftpb.MsgTimeoutNow.Enum(), From: new(uint64(99)), To: new(f), Term: new(term + 1)},
	}
	before := st.Metrics.InboundRejected
	for _, m := range forged {
		c.nodes[f].Step(m)
	}
	c.settle()
	after := c.nodes[f].Status()
	if got := after.Metrics.InboundRejected - before; got != uint64(len(forged)) {
		t.Errorf("rejected %d of %d forged messages", got, len(forged))
	}
	if after.Term != term || after.Leader != lead {
		t.Fatalf("follower moved to term %d leader %x, want term %d leader %x", after.Term, after.Leader, term, lead)
	}
	c.put(lead, "k", "v2")
	c.waitFor("converged after the forgeries", 50, func() bool { return c.converged(c.ids...) })
	if v, _ := c.kvs[f].Get("k"); v != "v2" {
		t.Fatalf("follower has k=%q, want v2", v)
	}
}
