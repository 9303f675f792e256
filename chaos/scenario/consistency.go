package scenario

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/meshkv/meshkv/chaos/check"
	"github.com/meshkv/meshkv/chaos/cluster"
)

// hashMembers asks every live member for HashKV at one revision they all have
// applied: the revision of a linearizable read after the final heal.
func hashMembers(ctx context.Context, cl *cluster.Cluster) []check.MemberHash {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	nodes := cl.Alive()
	out := make([]check.MemberHash, len(nodes))
	for i, n := range nodes {
		out[i].Member = n.Name
	}
	all, err := clientv3.New(clientv3.Config{Endpoints: cl.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		for i := range out {
			out[i].Err = err.Error()
		}
		return out
	}
	defer all.Close()
	resp, err := all.Get(ctx, "chaos/consistency")
	if err != nil {
		for i := range out {
			out[i].Err = "reading the common revision: " + err.Error()
		}
		return out
	}
	rev := resp.Header.Revision
	for i, n := range nodes {
		out[i] = hashMember(ctx, n, rev)
	}
	return out
}

// hashMember waits until node n has applied rev, then hashes at rev.
func hashMember(ctx context.Context, n *cluster.Node, rev int64) check.MemberHash {
	h := check.MemberHash{Member: n.Name, Revision: rev}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{n.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		h.Err = err.Error()
		return h
	}
	defer cli.Close()
	for {
		r, err := cli.Get(ctx, "chaos/consistency", clientv3.WithSerializable())
		if err == nil && r.Header.Revision >= rev {
			break
		}
		select {
		case <-ctx.Done():
			h.Err = "did not reach the common revision"
			return h
		case <-time.After(50 * time.Millisecond):
		}
	}
	resp, err := cli.HashKV(ctx, n.ClientURL, rev)
	if err != nil {
		h.Err = err.Error()
		return h
	}
	h.Hash, h.CompactRev = resp.Hash, resp.CompactRevision
	return h
}
