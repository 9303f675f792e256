package etcdsnap

import (
	"bytes"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func TestRevKey(t *testing.T) {
	cases := []struct {
		main, sub int64
		tomb      bool
		hex       string
	}{
		{1, 0, false, "00000000000000015f0000000000000000"},
		{0x0102030405060708, 9, false, "01020304050607085f0000000000000009"},
		{5, 1, true, "00000000000000055f000000000000000174"},
		{math.MaxInt64, math.MaxInt64, false, "7fffffffffffffff5f7fffffffffffffff"},
	}
	for _, c := range cases {
		k := appendRevKey(nil, c.main, c.sub, c.tomb)
		if got := hex.EncodeToString(k); got != c.hex {
			t.Errorf("appendRevKey(%d, %d, %v) = %s, want %s", c.main, c.sub, c.tomb, got, c.hex)
		}
		main, sub, tomb, ok := parseRevKey(k)
		if !ok || main != c.main || sub != c.sub || tomb != c.tomb {
			t.Errorf("parseRevKey(%s) = %d %d %v %v", c.hex, main, sub, tomb, ok)
		}
	}
	for _, bad := range []string{
		"",
		"00000000000000015f00000000000000",     // short
		"00000000000000012d0000000000000000",   // wrong separator
		"00000000000000015f000000000000000078", // wrong mark
		"80000000000000005f0000000000000000",   // negative main
		"00000000000000015f8000000000000000",   // negative sub
	} {
		b, _ := hex.DecodeString(bad)
		if _, _, _, ok := parseRevKey(b); ok {
			t.Errorf("parseRevKey(%s) accepted", bad)
		}
	}
}

// appendKV writes exactly what proto.Marshal writes for mvccpb.KeyValue, and
// parseKV reads proto.Marshal's output.
func TestKVEncodingMatchesProto(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		kv := KV{Key: []byte{byte(i), byte(i >> 8), 'k'}}
		if r.IntN(5) > 0 {
			kv.Value = bytes.Repeat([]byte{'v'}, r.IntN(300))
		}
		kv.CreateRevision = r.Int64N(1 << (r.IntN(62) + 1))
		kv.ModRevision = r.Int64N(1 << (r.IntN(62) + 1))
		kv.Version = r.Int64N(1000)
		if r.IntN(3) == 0 {
			kv.Lease = r.Int64() - math.MaxInt64/2
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&mvccpb.KeyValue{
			Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision,
			ModRevision: kv.ModRevision, Version: kv.Version, Lease: kv.Lease,
		})
		if err != nil {
			t.Fatal(err)
		}
		got := appendKV(nil, &kv)
		if !bytes.Equal(got, want) {
			t.Fatalf("appendKV(%+v) = %x, proto says %x", kv, got, want)
		}
		var back KV
		if !parseKV(want, &back) || !kvEqual(back, kv) {
			t.Fatalf("parseKV(%x) = %+v, want %+v", want, back, kv)
		}
	}
	tomb := KV{Key: []byte("gone"), ModRevision: 9, Tombstone: true}
	want, _ := proto.Marshal(&mvccpb.KeyValue{Key: tomb.Key})
	if got := appendKV(nil, &tomb); !bytes.Equal(got, want) {
		t.Errorf("tombstone encodes as %x, etcd writes %x", got, want)
	}
}

func kvEqual(a, b KV) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && a.CreateRevision == b.CreateRevision &&
		a.ModRevision == b.ModRevision && a.Version == b.Version && a.Lease == b.Lease && a.Tombstone == b.Tombstone
}

func TestParseKVSkipsUnknownAndRejectsGarbage(t *testing.T) {
	b := appendKV(nil, &KV{Key: []byte("k"), Value: []byte("v"), CreateRevision: 2, ModRevision: 3, Version: 1})
	b = protowire.AppendTag(b, 99, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("future field"))
	b = protowire.AppendTag(b, kvVersion, protowire.BytesType) // known number, other wire type
	b = protowire.AppendBytes(b, []byte("x"))
	var kv KV
	if !parseKV(b, &kv) || string(kv.Key) != "k" || kv.Version != 1 || kv.ModRevision != 3 {
		t.Fatalf("parseKV with unknown fields = %+v", kv)
	}
	for _, bad := range [][]byte{{0x0a, 0x05, 'a'}, {0x10}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, {0x00}} {
		if parseKV(bad, &kv) {
			t.Errorf("parseKV(%x) accepted", bad)
		}
	}
}

func TestLeaseEncoding(t *testing.T) {
	// leasepb.Lease{ID: 0x1234, TTL: 30, RemainingTTL: 7}: fields 1, 2, 3.
	l := Lease{ID: 0x1234, TTL: 30, RemainingTTL: 7}
	if got := hex.EncodeToString(appendLease(nil, l)); got != "08b424101e1807" {
		t.Errorf("appendLease = %s", got)
	}
	for _, l := range []Lease{l, {ID: -3, TTL: 1}, {ID: math.MaxInt64, TTL: 9_000_000_000, RemainingTTL: 1}} {
		back, ok := parseLease(appendLease(nil, l))
		if !ok || back != l {
			t.Errorf("lease %+v decodes as %+v, %v", l, back, ok)
		}
	}
	if hex.EncodeToString(leaseKey(-1)) != "ffffffffffffffff" || hex.EncodeToString(leaseKey(5)) != "0000000000000005" {
		t.Error("lease keys are not 8-byte big endian")
	}
}
