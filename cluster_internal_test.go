package meshkv

import (
	"testing"
	"time"
)

// TestSettleOnlyWhenWaitingForPeers: a node with no peers to wait for forms
// its cluster at once; one that has peers listens first.
func TestSettleOnlyWhenWaitingForPeers(t *testing.T) {
	for _, tc := range []struct {
		peers []string
		size  int
		want  time.Duration
	}{
		{nil, 0, 0},
		{nil, 1, 0},
		{[]string{"10.0.0.2:2380"}, 1, bootstrapSettle},
		{nil, 3, bootstrapSettle},
	} {
		n := &Node{cfg: Config{Peers: tc.peers, InitialClusterSize: tc.size}}
		if got := n.settle(); got != tc.want {
			t.Errorf("peers %v size %d: settle %v, want %v", tc.peers, tc.size, got, tc.want)
		}
	}
}
