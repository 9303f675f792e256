package wire

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	etcdelection "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	etcdlock "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"

	"github.com/meshkv/meshkv/api/v3electionpb"
	"github.com/meshkv/meshkv/api/v3lockpb"
)

// etcdMessage is a message generated from etcd's own protos.
type etcdMessage = proto.Message

// pair is one of our messages and etcd's message it must match on the wire.
type pair struct {
	ours   func() proto.Message
	theirs func() etcdMessage
}

var pairs = []pair{
	{func() proto.Message { return new(v3lockpb.LockRequest) }, func() etcdMessage { return new(etcdlock.LockRequest) }},
	{func() proto.Message { return new(v3lockpb.LockResponse) }, func() etcdMessage { return new(etcdlock.LockResponse) }},
	{func() proto.Message { return new(v3lockpb.UnlockRequest) }, func() etcdMessage { return new(etcdlock.UnlockRequest) }},
	{func() proto.Message { return new(v3lockpb.UnlockResponse) }, func() etcdMessage { return new(etcdlock.UnlockResponse) }},

	{func() proto.Message { return new(v3electionpb.CampaignRequest) }, func() etcdMessage { return new(etcdelection.CampaignRequest) }},
	{func() proto.Message { return new(v3electionpb.CampaignResponse) }, func() etcdMessage { return new(etcdelection.CampaignResponse) }},
	{func() proto.Message { return new(v3electionpb.LeaderKey) }, func() etcdMessage { return new(etcdelection.LeaderKey) }},
	{func() proto.Message { return new(v3electionpb.LeaderRequest) }, func() etcdMessage { return new(etcdelection.LeaderRequest) }},
	{func() proto.Message { return new(v3electionpb.LeaderResponse) }, func() etcdMessage { return new(etcdelection.LeaderResponse) }},
	{func() proto.Message { return new(v3electionpb.ResignRequest) }, func() etcdMessage { return new(etcdelection.ResignRequest) }},
	{func() proto.Message { return new(v3electionpb.ResignResponse) }, func() etcdMessage { return new(etcdelection.ResignResponse) }},
	{func() proto.Message { return new(v3electionpb.ProclaimRequest) }, func() etcdMessage { return new(etcdelection.ProclaimRequest) }},
	{func() proto.Message { return new(v3electionpb.ProclaimResponse) }, func() etcdMessage { return new(etcdelection.ProclaimResponse) }},
}

// TestAllMessagesPaired fails when a message is added to our protos without
// a counterpart in the pairs table above.
func TestAllMessagesPaired(t *testing.T) {
	paired := map[protoreflect.FullName]bool{}
	for _, p := range pairs {
		paired[p.ours().ProtoReflect().Descriptor().FullName()] = true
	}
	files := []protoreflect.FileDescriptor{
		v3lockpb.File_meshkv_api_v3lockpb_v3lock_proto,
		v3electionpb.File_meshkv_api_v3electionpb_v3election_proto,
	}
	for _, f := range files {
		msgs := f.Messages()
		for i := 0; i < msgs.Len(); i++ {
			if name := msgs.Get(i).FullName(); !paired[name] {
				t.Errorf("message %s has no etcd counterpart in the wire test", name)
			}
		}
	}
}

// TestDescriptorsMatch compares the message schemas field by field: numbers,
// names, kinds, cardinality, and nested message shapes.
func TestDescriptorsMatch(t *testing.T) {
	for _, p := range pairs {
		ours := p.ours().ProtoReflect().Descriptor()
		theirs := p.theirs().ProtoReflect().Descriptor()
		t.Run(string(ours.Name()), func(t *testing.T) {
			for _, d := range compareDescriptors(ours, theirs, string(ours.Name())) {
				t.Error(d)
			}
		})
	}
}

func compareDescriptors(ours, theirs protoreflect.MessageDescriptor, path string) []string {
	var diffs []string
	if ours.Name() != theirs.Name() {
		diffs = append(diffs, fmt.Sprintf("%s: message name %s, etcd has %s", path, ours.Name(), theirs.Name()))
	}
	if ours.Syntax() != theirs.Syntax() {
		diffs = append(diffs, fmt.Sprintf("%s: syntax %v, etcd has %v", path, ours.Syntax(), theirs.Syntax()))
	}
	of, tf := ours.Fields(), theirs.Fields()
	if of.Len() != tf.Len() {
		diffs = append(diffs, fmt.Sprintf("%s: %d fields, etcd has %d", path, of.Len(), tf.Len()))
	}
	for i := 0; i < tf.Len(); i++ {
		want := tf.Get(i)
		got := of.ByNumber(want.Number())
		fpath := fmt.Sprintf("%s.%s", path, want.Name())
		if got == nil {
			diffs = append(diffs, fmt.Sprintf("%s: field number %d missing", fpath, want.Number()))
			continue
		}
		if got.Name() != want.Name() {
			diffs = append(diffs, fmt.Sprintf("%s: field %d is named %s", fpath, want.Number(), got.Name()))
		}
		if got.Kind() != want.Kind() {
			diffs = append(diffs, fmt.Sprintf("%s: kind %v, etcd has %v", fpath, got.Kind(), want.Kind()))
		}
		if got.Cardinality() != want.Cardinality() {
			diffs = append(diffs, fmt.Sprintf("%s: cardinality %v, etcd has %v", fpath, got.Cardinality(), want.Cardinality()))
		}
		if got.HasPresence() != want.HasPresence() {
			diffs = append(diffs, fmt.Sprintf("%s: presence %v, etcd has %v", fpath, got.HasPresence(), want.HasPresence()))
		}
		if got.JSONName() != want.JSONName() {
			diffs = append(diffs, fmt.Sprintf("%s: JSON name %s, etcd has %s", fpath, got.JSONName(), want.JSONName()))
		}
		if want.Kind() == protoreflect.MessageKind && got.Kind() == protoreflect.MessageKind {
			// Headers and key-values are etcd's own messages on both sides.
			if pkg := want.Message().ParentFile().Package(); (pkg == "etcdserverpb" || pkg == "mvccpb") && got.Message().FullName() != want.Message().FullName() {
				diffs = append(diffs, fmt.Sprintf("%s: message type %s, etcd has %s", fpath, got.Message().FullName(), want.Message().FullName()))
			}
			diffs = append(diffs, compareDescriptors(got.Message(), want.Message(), fpath)...)
		}
	}
	return diffs
}

// fill sets every field of m (recursively) to a value derived from seed and
// the field's position, so that a dropped or misnumbered field shows up.
// Style "extreme" uses the boundary values of each kind.
func fill(m protoreflect.Message, seed int, extreme bool) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		n := int64(seed)*100 + int64(fd.Number())
		var v protoreflect.Value
		switch fd.Kind() {
		case protoreflect.Int64Kind:
			if extreme {
				v = protoreflect.ValueOfInt64([]int64{math.MinInt64, math.MaxInt64, -1}[int(n)%3])
			} else {
				v = protoreflect.ValueOfInt64(-(n << 33) - n)
			}
		case protoreflect.Uint64Kind:
			if extreme {
				v = protoreflect.ValueOfUint64(math.MaxUint64 - uint64(n%2))
			} else {
				v = protoreflect.ValueOfUint64(uint64(n)<<40 | uint64(n))
			}
		case protoreflect.BytesKind:
			if extreme {
				// Long enough for a multi-byte length prefix, with every byte value.
				b := make([]byte, 70000+int(n))
				for j := range b {
					b[j] = byte(j)
				}
				v = protoreflect.ValueOfBytes(b)
			} else {
				v = protoreflect.ValueOfBytes([]byte(fmt.Sprintf("f%d\x00\xff%s", n, strings.Repeat("x", int(n%7)))))
			}
		case protoreflect.MessageKind:
			sub := m.NewField(fd).Message()
			fill(sub, seed+1, extreme)
			v = protoreflect.ValueOfMessage(sub)
		default:
			panic(fmt.Sprintf("fill: field %s has unhandled kind %v", fd.FullName(), fd.Kind()))
		}
		m.Set(fd, v)
	}
}

// compareValues walks two messages of matching shape in parallel, by field
// number, and reports every field whose value differs or is unset on one side.
func compareValues(ours, theirs protoreflect.Message, path string) []string {
	var diffs []string
	fields := ours.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		ofd := fields.Get(i)
		tfd := theirs.Descriptor().Fields().ByNumber(ofd.Number())
		fpath := path + "." + string(ofd.Name())
		if tfd == nil {
			diffs = append(diffs, fpath+": no such field in etcd's message")
			continue
		}
		if ours.Has(ofd) != theirs.Has(tfd) {
			diffs = append(diffs, fmt.Sprintf("%s: set=%v here, set=%v in etcd's message", fpath, ours.Has(ofd), theirs.Has(tfd)))
			continue
		}
		ov, tv := ours.Get(ofd), theirs.Get(tfd)
		switch ofd.Kind() {
		case protoreflect.MessageKind:
			diffs = append(diffs, compareValues(ov.Message(), tv.Message(), fpath)...)
		case protoreflect.BytesKind:
			if !bytes.Equal(ov.Bytes(), tv.Bytes()) {
				diffs = append(diffs, fmt.Sprintf("%s: %d bytes here, %d bytes in etcd's message (or different content)", fpath, len(ov.Bytes()), len(tv.Bytes())))
			}
		default:
			if !ov.Equal(tv) {
				diffs = append(diffs, fmt.Sprintf("%s: %v here, %v in etcd's message", fpath, ov, tv))
			}
		}
	}
	if u := theirs.GetUnknown(); len(u) > 0 {
		diffs = append(diffs, fmt.Sprintf("%s: etcd's message kept %d bytes of unknown fields", path, len(u)))
	}
	return diffs
}

// TestRoundTrip encodes each of our messages, decodes the bytes as etcd's
// message, re-encodes that and decodes it back:
// every field must arrive, the two encodings must be byte-identical, and the
// final message must equal the original.
func TestRoundTrip(t *testing.T) {
	for _, p := range pairs {
		for _, extreme := range []bool{false, true} {
			for _, empty := range []bool{false, true} {
				ours := p.ours()
				if !empty {
					fill(ours.ProtoReflect(), 1, extreme)
				}
				name := fmt.Sprintf("%s/extreme=%v/empty=%v", ours.ProtoReflect().Descriptor().Name(), extreme, empty)
				if empty && extreme {
					continue
				}
				t.Run(name, func(t *testing.T) {
					roundTrip(t, ours, p.theirs())
				})
			}
		}
	}
}

func roundTrip(t *testing.T, ours proto.Message, theirs etcdMessage) {
	t.Helper()
	wire, err := proto.Marshal(ours)
	if err != nil {
		t.Fatalf("marshal ours: %v", err)
	}
	if err := proto.Unmarshal(wire, theirs); err != nil {
		t.Fatalf("decoding our bytes as etcd's message: %v", err)
	}
	for _, d := range compareValues(ours.ProtoReflect(), theirs.ProtoReflect(), "") {
		t.Error(d)
	}
	back, err := proto.Marshal(theirs)
	if err != nil {
		t.Fatalf("marshal etcd's message: %v", err)
	}
	if !bytes.Equal(wire, back) {
		t.Errorf("encodings differ:\n ours %x\n etcd %x", head(wire), head(back))
	}
	again := ours.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(back, again); err != nil {
		t.Fatalf("unmarshal etcd's bytes: %v", err)
	}
	if !proto.Equal(ours, again) {
		t.Errorf("round trip changed the message:\n sent %v\n got  %v", ours, again)
	}
}

func head(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// TestRegistry checks that etcd's Lock and Election protos and ours, linked
// into this one binary, are registered side by side under different files
// and full names, while both refer to etcd's own header and key-value
// messages.
func TestRegistry(t *testing.T) {
	for _, p := range pairs {
		ours, theirs := p.ours().ProtoReflect().Descriptor(), p.theirs().ProtoReflect().Descriptor()
		if ours.FullName() == theirs.FullName() {
			t.Errorf("%s: same full name as etcd's", ours.FullName())
		}
		if ours.ParentFile().Path() == theirs.ParentFile().Path() {
			t.Errorf("%s: registered in etcd's file %s", ours.FullName(), theirs.ParentFile().Path())
		}
		for _, name := range []protoreflect.FullName{ours.FullName(), theirs.FullName()} {
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
			if err != nil {
				t.Errorf("%s is not registered: %v", name, err)
				continue
			}
			if d.(protoreflect.MessageDescriptor) != ours && d.(protoreflect.MessageDescriptor) != theirs {
				t.Errorf("%s resolves to a third descriptor", name)
			}
		}
	}
	header := (&v3lockpb.LockResponse{}).ProtoReflect().Descriptor().Fields().ByName("header").Message()
	kv := (&v3electionpb.LeaderResponse{}).ProtoReflect().Descriptor().Fields().ByName("kv").Message()
	if header.FullName() != "etcdserverpb.ResponseHeader" || kv.FullName() != "mvccpb.KeyValue" {
		t.Errorf("header is %s and kv is %s, want etcd's etcdserverpb.ResponseHeader and mvccpb.KeyValue", header.FullName(), kv.FullName())
	}
}
