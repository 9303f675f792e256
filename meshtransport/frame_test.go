package meshtransport

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/internal/raftwire"
)

func TestHeaderRoundTripAndRejects(t *testing.T) {
	h := header{kind: kindChunk, cluster: 1, from: 2, to: 3, seq: 4}
	f := append(appendHeader(nil, h), 'x')
	got, body, err := decodeHeader(f)
	if err != nil || got != h || string(body) != "x" {
		t.Fatalf("round trip: %+v %q %v", got, body, err)
	}
	for name, b := range map[string][]byte{
		"short":        f[:headerLen-1],
		"version":      append([]byte{9}, f[1:]...),
		"kind 0":       append([]byte{frameVersion, 0}, f[2:]...),
		"unknown kind": append([]byte{frameVersion, byte(numKinds)}, f[2:]...),
	} {
		if _, _, err := decodeHeader(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestRaftBatchRoundTrip(t *testing.T) {
	var body []byte
	msgs := []*raftpb.Message{
		{Type: raftpb.MsgApp.Enum(), From: new(uint64(1)), To: new(uint64(2)), Index: new(uint64(5))},
		{Type: raftpb.MsgHeartbeat.Enum(), From: new(uint64(1)), To: new(uint64(2)), Commit: new(uint64(9))},
	}
	for _, m := range msgs {
		var err error
		if body, err = appendRaftMsg(body, m, raftwire.Size(m)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; len(body) > 0; i++ {
		enc, rest, err := nextRaftMsg(body)
		if err != nil {
			t.Fatal(err)
		}
		m, err := raftwire.Unmarshal(enc)
		if err != nil || m.GetType() != msgs[i].GetType() {
			t.Fatalf("message %d: %v %v", i, m, err)
		}
		body = rest
	}
	if _, _, err := nextRaftMsg([]byte{0x05, 1, 2}); err == nil {
		t.Fatal("a length beyond the body decoded")
	}
}

func TestChunkAndMemberBodies(t *testing.T) {
	data := make([]byte, 100)
	b := appendChunk(nil, chunkHeader{index: 0, count: 1, total: 100, sum: 5}, data)
	if ch, d, err := decodeChunk(b, 1<<20); err != nil || ch.total != 100 || len(d) != 100 {
		t.Fatalf("chunk: %+v %d %v", ch, len(d), err)
	}
	for name, ch := range map[string]chunkHeader{
		"index beyond count": {index: 1, count: 1, total: 100},
		"count mismatch":     {index: 0, count: 2, total: 100},
		"too large":          {index: 0, count: 1, total: 2 << 20},
		"empty":              {index: 0, count: 1, total: 0},
	} {
		if _, _, err := decodeChunk(appendChunk(nil, ch, data), 1<<20); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, _, err := decodeChunk(appendChunk(nil, chunkHeader{index: 0, count: 1, total: 100}, data[:99]), 1<<20); err == nil {
		t.Error("short chunk data decoded")
	}
	mb := memberBody{term: 3, index: 4, status: StatusRemoved, leader: 7}
	for _, k := range []frameKind{kindRemoved, kindReply} {
		got, err := decodeMemberBody(k, appendMemberBody(nil, k, mb))
		if err != nil || got.term != 3 || got.index != 4 {
			t.Fatalf("%v: %+v %v", k, got, err)
		}
	}
	if _, err := decodeMemberBody(kindReply, append(appendMemberBody(nil, kindReply, mb), 0)); err == nil {
		t.Fatal("reply with a trailing byte decoded")
	}
	bad := appendMemberBody(nil, kindReply, mb)
	bad[0] = 9
	if _, err := decodeMemberBody(kindReply, bad); err == nil {
		t.Fatal("reply with an unknown status decoded")
	}
	if _, err := decodeMemberBody(kindQuery, []byte{1}); err == nil {
		t.Fatal("query with a body decoded")
	}
}

func TestIdentityMapping(t *testing.T) {
	id := newTestIdentity(t)
	if RaftIDOf(id.PublicKey()) != id.RaftID() || PeerNameOf(id.PublicKey()) != id.PeerName() {
		t.Fatal("identity and mapping disagree")
	}
	if id.RaftID() == 0 || id.PeerName() == 0 || uint64(id.PeerName()) >= 1<<48 {
		t.Fatalf("ids out of range: %v %v", id.RaftID(), id.PeerName())
	}
	other := newTestIdentity(t)
	if other.RaftID() == id.RaftID() {
		t.Fatal("two identities share a raft id")
	}
}
