// Package ids defines the typed identifiers that cross meshkv's package
// boundaries, so that a member id, a cluster id and a raw number cannot be
// mixed up without a conversion that shows in the code.
package ids

import "strconv"

// MemberID is a raft member's id. It is never 0 for a member, and never
// reused: a restarted process is a new member with a new id (its state was
// in memory). With a mesh, it is derived from the member's public key, so
// it cannot be claimed without that key.
type MemberID uint64

// String formats the id in hex, as etcd and etcdctl show member ids.
func (id MemberID) String() string { return strconv.FormatUint(uint64(id), 16) }

// ClusterID identifies one raft cluster (0 until the node formed or joined
// one). Two clusters of the same name on one mesh have different ids.
type ClusterID uint64

// String formats the id in hex, as etcd shows cluster ids.
func (id ClusterID) String() string { return strconv.FormatUint(uint64(id), 16) }
