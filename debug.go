package meshkv

// NodeStats is a point-in-time view of one node's raft log, snapshots, store
// and mesh transport: the numbers an operator watches to see that memory
// stays bounded and that lagging members catch up. Counters are cumulative
// since Start. The raft fields are zero while the node has not yet formed or
// joined a cluster.
type NodeStats struct {
	// Leader is the raft id of the current leader (0 while none is known).
	Leader uint64
	// Term is the raft term.
	Term uint64
	// CommitIndex, AppliedIndex and SnapshotIndex are raft log indexes:
	// committed, applied to the store, and covered by the newest snapshot
	// this node holds (taken by itself or received from the leader).
	CommitIndex   uint64
	AppliedIndex  uint64
	SnapshotIndex uint64
	// LogEntries is the number of committed entries above the newest
	// snapshot (CommitIndex - SnapshotIndex): the part of the in-memory raft
	// log that grows until the next snapshot (taken every
	// Config.SnapshotCount applied entries). Below the snapshot the log also
	// keeps raftadapter.DefaultSnapshotCatchUpEntries entries for followers
	// that are only a little behind.
	LogEntries uint64
	// SnapshotsTaken counts snapshots this node took, after each of which
	// it compacted its log; SnapshotsRestored counts snapshots it received
	// from a leader and installed in place of its state.
	SnapshotsTaken    uint64
	SnapshotsRestored uint64

	// Revision and CompactRevision are the store's current and compacted
	// revisions; StoreBytes is its size as Status reports it (DbSize).
	Revision        int64
	CompactRevision int64
	StoreBytes      int64

	// Mesh holds the mesh transport's counters (zero for a standalone node).
	Mesh MeshStats
}

// MeshStats are cumulative counters of a node's mesh transport.
type MeshStats struct {
	// MessagesSent and MessagesReceived count raft messages.
	MessagesSent     uint64
	MessagesReceived uint64
	// Dropped counts outbound raft messages dropped (full queue, no route,
	// too large, sent after close).
	Dropped uint64
	// ChunksSent and ChunksReceived count chunks of large messages:
	// snapshots, and any raft message larger than a chunk, cross the mesh
	// as numbered, checksummed chunks.
	ChunksSent     uint64
	ChunksReceived uint64
	// SnapshotsSent counts snapshots the receiver acknowledged whole;
	// TransfersFailed counts chunked sends reported failed (lost chunk, no
	// acknowledgement in time); TransfersAbandoned counts incomplete
	// inbound transfers dropped after the timeout.
	SnapshotsSent      uint64
	TransfersFailed    uint64
	TransfersAbandoned uint64
	// Detoured and DetouredChunks count raft messages and chunks this node
	// sent sealed over the mesh (through other peers) because it had no
	// link to the destination; Relayed counts mesh messages it forwarded
	// as the relay for other peers. RelayDropped is always 0: the mesh
	// router relays, and drops, without telling.
	Detoured       uint64
	DetouredChunks uint64
	Relayed        uint64
	RelayDropped   uint64
}

// Stats returns the node's current numbers. It does not block on the raft
// loop and is cheap enough to poll.
func (n *Node) Stats() NodeStats {
	s := NodeStats{
		Revision:        n.store.Rev(),
		CompactRevision: n.store.CompactRev(),
		StoreBytes:      n.store.Size(),
	}
	if rn := n.raft.Load(); rn != nil {
		st := rn.Status()
		s.Leader, s.Term = st.Leader, st.Term
		s.CommitIndex, s.AppliedIndex, s.SnapshotIndex = st.CommitIndex, st.AppliedIndex, st.SnapshotIndex
		if st.CommitIndex > st.SnapshotIndex {
			s.LogEntries = st.CommitIndex - st.SnapshotIndex
		}
		s.SnapshotsTaken = st.Metrics.SnapshotsTaken
		s.SnapshotsRestored = st.Metrics.SnapshotsRestored
	}
	if n.mesh != nil {
		ms := n.mesh.Stats()
		s.Mesh = MeshStats{
			MessagesSent:       ms.SentDirect + ms.SentRelayed,
			MessagesReceived:   ms.Received,
			Dropped:            ms.Dropped(),
			ChunksSent:         ms.ChunksSent,
			ChunksReceived:     ms.ChunksReceived,
			SnapshotsSent:      ms.SnapshotsSent,
			TransfersFailed:    ms.SnapshotsFailed,
			TransfersAbandoned: ms.TransfersAbandoned,
			Detoured:           ms.SentRelayed,
			DetouredChunks:     ms.ChunksSentRelayed,
			Relayed:            ms.Router.RelayedForOthers,
		}
	}
	return s
}
