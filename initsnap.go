package meshkv

import "errors"

// ErrInitialSnapshotJoin is reported (by Start, or by Err) when a node with
// Config.InitialSnapshot finds an existing cluster of its name on the mesh:
// it would join that cluster and take the cluster's state, not the file's.
// Start it with another cluster name to found a new cluster from the file,
// or without the file to join.
var ErrInitialSnapshotJoin = errors.New("meshkv: the initial snapshot can only found a new cluster, and this node is joining an existing one")
