package membership

import (
	"encoding/json"
	"testing"

	"github.com/meshkv/meshkv/internal/bootstrap"
	"github.com/meshkv/meshkv/internal/ids"
)

func TestAppStateRoundTrip(t *testing.T) {
	in := AppState{Boot: bootstrap.State{RaftID: 7, ClusterID: 9, Supersedes: 4,
		Promise: &bootstrap.Proposal{Ballot: bootstrap.Ballot{Founder: 3, Nonce: 4}, Members: []ids.MemberID{3, 7}}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeAppState(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Boot.RaftID != 7 || got.Boot.ClusterID != 9 || got.Boot.Supersedes != 4 || got.Boot.Promise == nil ||
		got.Boot.Promise.Ballot != in.Boot.Promise.Ballot {
		t.Fatalf("round trip = %+v, want %+v", got, in)
	}
	for _, bad := range []string{"{", "{}", `{"b":{}}`} {
		if _, err := DecodeAppState([]byte(bad)); err == nil {
			t.Errorf("DecodeAppState(%s) succeeded", bad)
		}
	}
}
