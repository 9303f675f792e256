package meshkv

import "github.com/meshkv/meshkv/internal/clusterview"

// raftMember returns the node's raft member: nil (not a typed nil) until the
// node has formed or joined a cluster.
func (n *Node) raftMember() clusterview.Raft {
	if rn := n.raft.Load(); rn != nil {
		return rn
	}
	return nil
}

// newClusterView returns what tells kvapi about this node's cluster (see
// internal/clusterview).
func (n *Node) newClusterView() *clusterview.View {
	return clusterview.New(clusterview.Config{
		ID:         n.id,
		Name:       n.cfg.Name,
		ClientURLs: n.clientURLs,
		ClusterID:  n.clusterID.Load,
		Raft:       n.raftMember,
		Membership: func() clusterview.Membership {
			if n.members == nil {
				return nil
			}
			return n.members
		},
		Mesh: func() clusterview.Mesh {
			if n.mesh == nil {
				return nil
			}
			return n.mesh
		},
		Forwarder: &n.leaderClients,
	})
}
