package kvapi

import (
	"bytes"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	gproto "google.golang.org/protobuf/proto"

	"github.com/meshkv/meshkv/api/v3lockpb"
)

// The codec writes the plain protobuf encoding (what etcd sends) and reads
// it back into fresh state.
func TestCodecRoundTrip(t *testing.T) {
	if Codec == nil {
		t.Fatal("no protobuf codec registered")
	}
	for _, v := range []gproto.Message{
		&pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 7}, Kvs: []*mvccpb.KeyValue{{Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 5000)}}, Count: 1},
		&pb.PutRequest{Key: []byte("a"), Value: []byte("b"), Lease: 9, PrevKv: true},
		&v3lockpb.LockRequest{Name: []byte("lock"), Lease: 3},
	} {
		got, err := Codec.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		want, err := gproto.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Materialize(), want) {
			t.Fatalf("%T: codec bytes differ from the protobuf encoding", v)
		}
		back := v.ProtoReflect().New().Interface()
		if err := Codec.Unmarshal(got, back); err != nil {
			t.Fatal(err)
		}
		if !gproto.Equal(back, v) {
			t.Fatalf("%T: round trip = %v, want %v", v, back, v)
		}
	}
	r := &pb.RangeResponse{Kvs: []*mvccpb.KeyValue{{Key: []byte("stale")}}} // Unmarshal must not append to old state
	data, _ := Codec.Marshal(&pb.RangeResponse{Kvs: []*mvccpb.KeyValue{{Key: []byte("k")}}})
	if err := Codec.Unmarshal(data, r); err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) != 1 || string(r.Kvs[0].Key) != "k" {
		t.Fatalf("unmarshal = %v", r.Kvs)
	}
}
