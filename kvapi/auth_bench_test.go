package kvapi

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkAuthOverhead measures a put and a get through the gRPC services
// (in-memory connection, one-member log without raft) with authentication
// disabled, and enabled for a user whose role grants a prefix: the cost of
// resolving the token and checking the permission.
func BenchmarkAuthOverhead(b *testing.B) {
	for _, enabled := range []bool{false, true} {
		ts := newAuthTestServer(b, Config{})
		name := "disabled"
		if enabled {
			name = "enabled"
			setupUsers(b, ts)
		}
		user, pw := "", ""
		if enabled {
			user, pw = "alice", "alicepw"
		}
		c := ts.client(b, ts.dial, user, pw)
		var n atomic.Int64
		b.Run("put/auth="+name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Put(b.Context(), fmt.Sprintf("app/%d", n.Add(1)%1000), "v"); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		b.Run("get/auth="+name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Get(b.Context(), fmt.Sprintf("app/%d", n.Add(1)%1000)); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
