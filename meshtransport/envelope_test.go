package meshtransport

import (
	"bytes"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/meshkv/meshkv/internal/raftwire"
	"github.com/weaveworks/mesh"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func TestHeaderRoundTrip(t *testing.T) {
	h := header{kind: kindChunkAck, cluster: 1<<63 + 5, from: 7, to: 9, seq: 1<<40 + 3}
	f := appendHeader(nil, h)
	f = append(f, 0xAA)
	if len(f) != headerLen+1 {
		t.Fatalf("frame is %d bytes, want %d", len(f), headerLen+1)
	}
	got, body, err := decodeHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	if got != h || !bytes.Equal(body, []byte{0xAA}) {
		t.Fatalf("decoded %+v %x, want %+v aa", got, body, h)
	}
}

func TestHeaderRejects(t *testing.T) {
	good := appendHeader(nil, header{kind: kindRaft})
	for name, f := range map[string][]byte{
		"empty":     nil,
		"short":     good[:headerLen-1],
		"version":   append([]byte{9}, good[1:]...),
		"kind zero": append([]byte{wireVersion, 0}, good[2:]...),
		"kind high": append([]byte{wireVersion, byte(kindRelay) + 1}, good[2:]...),
	} {
		if _, _, err := decodeHeader(f); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err = %v, want errMalformed", name, err)
		}
	}
}

func TestRaftBatchRoundTrip(t *testing.T) {
	hb := newMsg(raftpb.MsgHeartbeat, 1, 2)
	hb.Term, hb.Commit = new(uint64(4)), new(uint64(10))
	app := newMsg(raftpb.MsgApp, 1, 2)
	app.Entries = []*raftpb.Entry{{Index: new(uint64(11)), Data: bytes.Repeat([]byte("x"), 300)}}
	msgs := []*raftpb.Message{hb, app, newMsg(raftpb.MsgVote, 1, 2)}
	f := appendHeader(nil, header{kind: kindRaft, to: 2})
	for _, m := range msgs {
		var err error
		if f, err = appendRaftMsg(f, m, raftwire.Size(m)); err != nil {
			t.Fatal(err)
		}
	}
	_, body, err := decodeHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; len(body) > 0; i++ {
		enc, rest, err := nextRaftMsg(body)
		if err != nil {
			t.Fatal(err)
		}
		body = rest
		m, err := raftwire.Unmarshal(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(m, msgs[i]) {
			t.Fatalf("message %d = %v, want %v", i, m, msgs[i])
		}
	}
	if _, _, err := nextRaftMsg([]byte{0x05, 1, 2}); !errors.Is(err, errMalformed) {
		t.Errorf("truncated message: err = %v, want errMalformed", err)
	}
	if _, _, err := nextRaftMsg([]byte{0xff}); !errors.Is(err, errMalformed) {
		t.Errorf("bad varint: err = %v, want errMalformed", err)
	}
}

func chunkBody(total uint64, index uint32, data []byte, sum uint32) []byte {
	count := uint32((total + ChunkSize - 1) / ChunkSize)
	return appendChunk(nil, chunkHeader{index: index, count: count, total: total, crc: crc32.Checksum(data, castagnoli), sum: sum}, data)
}

func TestChunkDecode(t *testing.T) {
	data := bytes.Repeat([]byte{7}, ChunkSize)
	tail := []byte("tail")
	total := uint64(ChunkSize + len(tail))
	ch, got, err := decodeChunk(chunkBody(total, 1, tail, 42))
	if err != nil {
		t.Fatal(err)
	}
	if ch.index != 1 || ch.count != 2 || ch.total != total || ch.sum != 42 || string(got) != "tail" {
		t.Fatalf("decoded %+v %q", ch, got)
	}
	if _, _, err := decodeChunk(chunkBody(total, 0, data, 42)); err != nil {
		t.Fatalf("full first chunk: %v", err)
	}

	corrupt := chunkBody(total, 1, tail, 42)
	corrupt[len(corrupt)-1] ^= 1
	bad := map[string][]byte{
		"short":          make([]byte, chunkHdrLen-1),
		"checksum":       corrupt,
		"index past end": appendChunk(nil, chunkHeader{index: 2, count: 2, total: total, crc: crc32.Checksum(tail, castagnoli)}, tail),
		"wrong count":    appendChunk(nil, chunkHeader{index: 0, count: 3, total: total, crc: crc32.Checksum(data, castagnoli)}, data),
		"wrong length":   chunkBody(total, 1, append(tail, 'x'), 42),
		"zero total":     appendChunk(nil, chunkHeader{index: 0, count: 1, total: 0}, nil),
		"too large":      appendChunk(nil, chunkHeader{index: 0, count: uint32((MaxTransfer + 1 + ChunkSize - 1) / ChunkSize), total: MaxTransfer + 1}, nil),
	}
	for name, b := range bad {
		if _, _, err := decodeChunk(b); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err = %v, want errMalformed", name, err)
		}
	}
}

func TestLiveSetAndRelay(t *testing.T) {
	names := []mesh.PeerName{1, 0xffffffffffff, 42}
	got, err := decodeLiveSet(appendLiveSet(nil, names))
	if err != nil || len(got) != 3 || got[0] != 1 || got[1] != 0xffffffffffff || got[2] != 42 {
		t.Fatalf("live set = %v, %v", got, err)
	}
	if got, err := decodeLiveSet(appendLiveSet(nil, nil)); err != nil || len(got) != 0 {
		t.Fatalf("empty live set = %v, %v", got, err)
	}
	for _, b := range [][]byte{nil, {3, 0, 0}, append(appendLiveSet(nil, names), 0)} {
		if _, err := decodeLiveSet(b); !errors.Is(err, errMalformed) {
			t.Errorf("live set %x: err = %v, want errMalformed", b, err)
		}
	}

	inner := appendHeader(nil, header{kind: kindRaft, to: 3, seq: 5})
	body := append(appendRelayHeader(nil, 10, 30), inner...)
	origin, dst, gotInner, ih, err := decodeRelay(body)
	if err != nil || origin != 10 || dst != 30 || !bytes.Equal(gotInner, inner) || ih.to != 3 {
		t.Fatalf("relay = %v %v %x %+v %v", origin, dst, gotInner, ih, err)
	}
	nested := append(appendRelayHeader(nil, 10, 30), appendHeader(nil, header{kind: kindRelay})...)
	if _, _, _, _, err := decodeRelay(nested); !errors.Is(err, errMalformed) {
		t.Errorf("relay in relay: err = %v, want errMalformed", err)
	}
	if _, _, _, _, err := decodeRelay(body[:relayHdrLen+3]); !errors.Is(err, errMalformed) {
		t.Errorf("truncated inner: err = %v, want errMalformed", err)
	}
}

// FuzzDecode feeds arbitrary bytes to every decoder: none may panic.
func FuzzDecode(f *testing.F) {
	f.Add(appendHeader(nil, header{kind: kindRaft}))
	f.Add(append(appendHeader(nil, header{kind: kindRelay}), appendRelayHeader(nil, 1, 2)...))
	f.Add(chunkBody(4, 0, []byte("abcd"), 1))
	f.Add(appendLiveSet(nil, []mesh.PeerName{1, 2}))
	f.Add((&metaData{entries: map[mesh.PeerName]*metaEntry{1: {Version: 1, Meta: Meta{ClientURLs: []string{"u"}}}}}).Encode()[0])
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = decodeHeader(b)
		_, _, _ = decodeChunk(b)
		_, _ = decodeLiveSet(b)
		_, _, _, _, _ = decodeRelay(b)
		_, _ = decodeMeta(b)
		for len(b) > 0 {
			_, rest, err := nextRaftMsg(b)
			if err != nil {
				break
			}
			b = rest
		}
	})
}
