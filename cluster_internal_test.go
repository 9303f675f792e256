package meshkv

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/bootstrap"
)

func TestAppStateRoundTrip(t *testing.T) {
	in := appState{
		Boot:    bootstrap.State{RaftID: 7, ClusterID: 9, Promise: &bootstrap.Proposal{Ballot: bootstrap.Ballot{Founder: 3, Nonce: 4}, Members: []uint64{3, 7}}},
		Term:    5,
		Leader:  true,
		Members: []uint64{3, 7, 8},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeAppState(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Boot.RaftID != 7 || got.Boot.ClusterID != 9 || got.Boot.Promise == nil || got.Boot.Promise.Ballot != in.Boot.Promise.Ballot ||
		got.Term != 5 || !got.Leader || !slices.Equal(got.Members, in.Members) {
		t.Fatalf("round trip = %+v, want %+v", got, in)
	}
	for _, bad := range []string{"{", "{}", `{"b":{}}`} {
		if _, err := decodeAppState([]byte(bad)); err == nil {
			t.Errorf("decodeAppState(%s) succeeded", bad)
		}
	}
}

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
