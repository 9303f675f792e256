package raftwire

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// msg returns a MsgApp of one entry.
func msg(from, to, idx uint64) *raftpb.Message {
	return &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: new(from), To: new(to), Index: new(idx), Term: new(uint64(1)),
		Entries: []*raftpb.Entry{{Term: new(uint64(1)), Index: new(idx), Data: []byte("entry")}}}
}

// randomMsg returns a message with a random subset of the direct codec's
// fields set, including zero and extreme values.
func randomMsg(r *rand.Rand) *raftpb.Message {
	u64 := func() *uint64 {
		if r.IntN(3) == 0 {
			return nil
		}
		switch r.IntN(4) {
		case 0:
			return new(uint64(0))
		case 1:
			return new(uint64(math.MaxUint64))
		}
		return new(r.Uint64N(1 << (r.IntN(63) + 1)))
	}
	bs := func() []byte {
		switch r.IntN(4) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	m := &raftpb.Message{To: u64(), From: u64(), Term: u64(), LogTerm: u64(), Index: u64(), Commit: u64(),
		RejectHint: u64(), Vote: u64(), Context: bs()}
	if r.IntN(4) > 0 {
		m.Type = raftpb.MessageType([]int32{0, 3, 4, 8, 15, 23, 99, -1, math.MaxInt32}[r.IntN(9)]).Enum()
	}
	if r.IntN(3) == 0 {
		m.Reject = new(r.IntN(2) == 0)
	}
	for range r.IntN(5) {
		e := &raftpb.Entry{Term: u64(), Index: u64(), Data: bs()}
		if r.IntN(2) == 0 {
			e.Type = raftpb.EntryType([]int32{0, 1, 2, -3}[r.IntN(4)]).Enum()
		}
		m.Entries = append(m.Entries, e)
	}
	return m
}

// checkRoundTrip checks that m encodes to proto's bytes and decodes back to
// what proto decodes.
func checkRoundTrip(t *testing.T, m *raftpb.Message) {
	t.Helper()
	want, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	size := Size(m)
	if size != len(want) {
		t.Fatalf("size %d, proto says %d for %v", size, len(want), m)
	}
	got, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding of %v:\n got  %x\n want %x", m, got, want)
	}
	checkDecode(t, got)
}

// checkDecode checks that Unmarshal agrees with proto.Unmarshal on
// data, and that its result does not alias data.
func checkDecode(t *testing.T, data []byte) {
	t.Helper()
	want := new(raftpb.Message)
	wantErr := proto.Unmarshal(data, want)
	data = bytes.Clone(data)
	got, err := Unmarshal(data)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("decoding %x: err %v, proto says %v", data, err, wantErr)
	}
	if err != nil {
		return
	}
	for i := range data {
		data[i] ^= 0xff
	}
	if !proto.Equal(got, want) {
		t.Fatalf("decoding gave %v, proto gives %v", got, want)
	}
}

func TestCodecMatchesProto(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		checkRoundTrip(t, randomMsg(r))
	}
	checkRoundTrip(t, &raftpb.Message{})
}

// Messages the direct codec leaves to proto still round-trip, unknown
// fields included.
func TestCodecSlowPath(t *testing.T) {
	snap := msg(1, 2, 3)
	snap.Snapshot = &raftpb.Snapshot{Data: []byte("snap"), Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(9))}}
	resp := msg(1, 2, 4)
	resp.Responses = []*raftpb.Message{msg(2, 1, 5)}
	unknown := msg(1, 2, 6)
	unknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7))
	entUnknown := msg(1, 2, 7)
	entUnknown.Entries[0].ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 50, protowire.VarintType), 1))
	nilEntry := msg(1, 2, 8)
	nilEntry.Entries = append(nilEntry.Entries, nil)
	for _, m := range []*raftpb.Message{snap, resp, unknown, entUnknown, nilEntry} {
		if _, ok := directSize(m); ok {
			t.Fatalf("direct codec took %v", m)
		}
		checkRoundTrip(t, m)
		data, _ := proto.Marshal(m)
		if _, err := decodeDirect(data); err == nil && m != nilEntry {
			t.Fatalf("direct decoder took %x", data)
		}
	}
}

func TestCodecMalformed(t *testing.T) {
	valid, _ := proto.Marshal(msg(1, 2, 3))
	cases := [][]byte{
		{0x08},                   // type without value
		{0x10, 0xff},             // truncated varint
		{0x3a, 0x05, 0x10},       // entry longer than the input
		{0x3a, 0x02, 0x10, 0xff}, // truncated varint inside an entry
		{0x00, 0x01},             // field number 0
		{0x0b, 0x0c},             // group
		{0x12, 0x01, 0x00},       // to, as bytes
		{0x3a, 0x02, 0x0a, 0x00}, // entry type, as bytes
		valid[:len(valid)-1],
	}
	for _, c := range cases {
		checkDecode(t, c)
	}
}

func TestCodecAllocations(t *testing.T) {
	m := msg(1, 2, 7)
	m.Entries = append(m.Entries, msg(1, 2, 8).Entries[0], msg(1, 2, 9).Entries[0])
	m.Commit, m.LogTerm = new(uint64(5)), new(uint64(1))
	size := Size(m)
	buf := make([]byte, 0, 2*size+8)
	if n := testing.AllocsPerRun(100, func() { _, _ = Append(buf[:0], m, Size(m)) }); n != 0 {
		t.Errorf("encoding allocates %.0f times, want 0", n)
	}
	data, _ := Marshal(m)
	// The message and its scalars, the entries and theirs, the entry
	// pointers, the bytes arena.
	if n := testing.AllocsPerRun(100, func() { _, _ = Unmarshal(data) }); n > 4 {
		t.Errorf("decoding a message of 3 entries allocates %.0f times, want at most 4", n)
	}
}

// FuzzUnmarshal checks that the direct decoder accepts, rejects and
// decodes exactly like proto.
func FuzzUnmarshal(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		data, _ := proto.Marshal(randomMsg(r))
		f.Add(data)
	}
	f.Add([]byte{0x3a, 0x05, 0x10})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data)
	})
}

// BenchmarkEncodeMsgApp measures encoding one small MsgApp into a reused
// buffer.
func BenchmarkEncodeMsgApp(b *testing.B) {
	m := msg(1, 2, 7)
	buf := make([]byte, 0, 1<<10)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Append(buf[:0], m, Size(m)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeMsgApp measures decoding one small MsgApp (the per-message
// cost on the receive path).
func BenchmarkDecodeMsgApp(b *testing.B) {
	m := msg(1, 2, 7)
	data, err := Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(data); err != nil {
			b.Fatal(err)
		}
	}
}
