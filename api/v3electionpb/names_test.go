package v3electionpb

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// TestNames pins the gRPC names to etcd's and checks that nothing is
// registered under etcd's protobuf names, which would make any binary that
// also links etcd's v3electionpb panic at init.
func TestNames(t *testing.T) {
	if Election_ServiceDesc.ServiceName != "v3electionpb.Election" {
		t.Errorf("service name %q, want etcd's v3electionpb.Election", Election_ServiceDesc.ServiceName)
	}
	for got, want := range map[string]string{
		Election_Campaign_FullMethodName: "/v3electionpb.Election/Campaign",
		Election_Proclaim_FullMethodName: "/v3electionpb.Election/Proclaim",
		Election_Leader_FullMethodName:   "/v3electionpb.Election/Leader",
		Election_Observe_FullMethodName:  "/v3electionpb.Election/Observe",
		Election_Resign_FullMethodName:   "/v3electionpb.Election/Resign",
	} {
		if got != want {
			t.Errorf("method %q, want %q", got, want)
		}
	}
	if s := Election_ServiceDesc.Streams; len(s) != 1 || s[0].StreamName != "Observe" || !s[0].ServerStreams || s[0].ClientStreams {
		t.Errorf("streams %+v, want Observe as the only (server) stream", s)
	}
	for _, name := range []protoreflect.FullName{"v3electionpb.Election", "v3electionpb.CampaignRequest", "v3electionpb.LeaderKey", "v3electionpb.LeaderResponse"} {
		if _, err := protoregistry.GlobalFiles.FindDescriptorByName(name); err == nil {
			t.Errorf("%s is registered; it would collide with etcd's registration", name)
		}
	}
	if got := (&LeaderKey{}).ProtoReflect().Descriptor().FullName(); got != "meshkv.v3electionpb.LeaderKey" {
		t.Errorf("LeaderKey is registered as %s", got)
	}
}
