package meshkv

import "go.uber.org/zap"

// zapDiscard is the logger given to the in-memory etcd client, which logs
// through zap. The client's own logs are noise for an embedded node.
func zapDiscard() *zap.Logger { return zap.NewNop() }
