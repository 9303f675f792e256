// Package clusterview tells kvapi about a node's cluster: its ids, the raft
// member's status, the member list with names and URLs, and the operator's
// membership changes (member remove and promote, move-leader), which a
// follower forwards to the leader's client URL. Its Replicator hands kvapi's
// proposals and read barriers to the raft member, and its Observer gives the
// metrics the node's numbers and the health checks its state.
//
// It reaches the raft member, the membership controller, the mesh and the
// leader clients through small interfaces that the node fills in; the raft
// member and the membership controller exist only once the node has formed
// or joined a cluster, so the node hands them over through functions that
// return nil until then. A View starts no goroutines and holds no state of
// its own.
package clusterview
