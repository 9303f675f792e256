package kvapi

import (
	"bytes"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"

	"github.com/meshkv/meshkv/api/v3lockpb"
)

// The fast path produces the default codec's bytes and reads them back.
func TestCodecMatchesDefault(t *testing.T) {
	def := encoding.GetCodecV2(proto.Name)
	for _, v := range []any{
		&pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 7}, Kvs: []*mvccpb.KeyValue{{Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 5000)}}, Count: 1},
		&pb.PutRequest{Key: []byte("a"), Value: []byte("b"), Lease: 9, PrevKv: true},
		&v3lockpb.LockRequest{Name: []byte("lock"), Lease: 3},
	} {
		got, err := Codec.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		want, err := def.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Materialize(), want.Materialize()) {
			t.Fatalf("%T: fast path bytes differ from the default codec's", v)
		}
	}
	var r pb.RangeResponse
	r.Kvs = []*mvccpb.KeyValue{{Key: []byte("stale")}} // Unmarshal must not append to old state
	data, _ := def.Marshal(&pb.RangeResponse{Kvs: []*mvccpb.KeyValue{{Key: []byte("k")}}})
	if err := Codec.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) != 1 || string(r.Kvs[0].Key) != "k" {
		t.Fatalf("unmarshal = %v", r.Kvs)
	}
	var l v3lockpb.LockRequest
	data, _ = def.Marshal(&v3lockpb.LockRequest{Name: []byte("n")})
	if err := Codec.Unmarshal(data, &l); err != nil || string(l.Name) != "n" {
		t.Fatalf("fallback unmarshal = %v, %v", &l, err)
	}
}
