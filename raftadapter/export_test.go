package raftadapter

import "go.etcd.io/raft/v3/raftpb"

// IdleForTest reports whether the raft loop has nothing queued and is
// waiting for events: tests use it, together with the network's in-flight
// count, to tell when a cluster has quiesced.
func (n *Node) IdleForTest() bool {
	if n.stopped() {
		return true
	}
	return !n.busy.Load() && n.in.empty() && len(n.propc) == 0 && len(n.readc) == 0 &&
		len(n.confc) == 0 && len(n.transferc) == 0 && !n.snapInFlight.Load()
}

// StoredSnapshotForTest returns the snapshot held in the node's raft storage.
func (n *Node) StoredSnapshotForTest() *raftpb.Snapshot {
	snap, _ := n.storage.Snapshot() // MemoryStorage.Snapshot never fails
	return snap
}
