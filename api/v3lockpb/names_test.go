package v3lockpb

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// TestNames pins the gRPC names to etcd's and checks that nothing is
// registered under etcd's protobuf names, which would make any binary that
// also links etcd's v3lockpb panic at init.
func TestNames(t *testing.T) {
	if Lock_ServiceDesc.ServiceName != "v3lockpb.Lock" {
		t.Errorf("service name %q, want etcd's v3lockpb.Lock", Lock_ServiceDesc.ServiceName)
	}
	for got, want := range map[string]string{
		Lock_Lock_FullMethodName:   "/v3lockpb.Lock/Lock",
		Lock_Unlock_FullMethodName: "/v3lockpb.Lock/Unlock",
	} {
		if got != want {
			t.Errorf("method %q, want %q", got, want)
		}
	}
	for _, name := range []protoreflect.FullName{"v3lockpb.Lock", "v3lockpb.LockRequest", "v3lockpb.LockResponse", "v3lockpb.UnlockRequest", "v3lockpb.UnlockResponse"} {
		if _, err := protoregistry.GlobalFiles.FindDescriptorByName(name); err == nil {
			t.Errorf("%s is registered; it would collide with etcd's registration", name)
		}
	}
	if got := (&LockRequest{}).ProtoReflect().Descriptor().FullName(); got != "meshkv.v3lockpb.LockRequest" {
		t.Errorf("LockRequest is registered as %s", got)
	}
}
