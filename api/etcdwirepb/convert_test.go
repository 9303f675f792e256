package etcdwirepb

import (
	"bytes"
	"math"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// TestConvertRoundTrip checks the helpers copy every field, and that the
// copies encode to etcd's bytes.
func TestConvertRoundTrip(t *testing.T) {
	h := &etcdserverpb.ResponseHeader{ClusterId: math.MaxUint64, MemberId: 7, Revision: -3, RaftTerm: 9}
	if got := ToEtcdHeader(FromEtcdHeader(h)); got.String() != h.String() {
		t.Errorf("header round trip: got %v, want %v", got, h)
	}
	kv := &mvccpb.KeyValue{Key: []byte("k"), CreateRevision: 2, ModRevision: 3, Version: 4, Value: []byte("v"), Lease: math.MinInt64}
	if got := ToEtcdKeyValue(FromEtcdKeyValue(kv)); got.String() != kv.String() {
		t.Errorf("key-value round trip: got %v, want %v", got, kv)
	}
	for _, c := range []struct {
		ours   proto.Message
		theirs interface{ Marshal() ([]byte, error) }
	}{
		{FromEtcdHeader(h), h},
		{FromEtcdKeyValue(kv), kv},
	} {
		got, err := proto.Marshal(c.ours)
		if err != nil {
			t.Fatal(err)
		}
		want, err := c.theirs.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%T encodes as %x, etcd's as %x", c.ours, got, want)
		}
	}
	if FromEtcdHeader(nil) != nil || ToEtcdHeader(nil) != nil || FromEtcdKeyValue(nil) != nil || ToEtcdKeyValue(nil) != nil {
		t.Error("a nil input must convert to nil")
	}
}
