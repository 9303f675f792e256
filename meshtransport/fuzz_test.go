package meshtransport

import (
	"bytes"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/internal/peerlink"
	"github.com/meshkv/meshkv/internal/raftwire"
)

// Fuzz tests of every decoder of bytes that come from the network. `go
// test` runs their seed corpora; explore one with, for example,
//
//	go test ./meshtransport -run '^$' -fuzz FuzzFrame -fuzztime 30s

// FuzzFrame decodes a frame as the receive path does: header, then the
// body of its kind.
func FuzzFrame(f *testing.F) {
	m := &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: new(uint64(1)), To: new(uint64(2)), Index: new(uint64(3))}
	raft, _ := appendRaftMsg(appendHeader(nil, header{kind: kindRaft, from: 1, to: 2}), m, raftwire.Size(m))
	f.Add(raft)
	f.Add(appendChunk(appendHeader(nil, header{kind: kindChunk, seq: 1}), chunkHeader{count: 1, total: 3}, []byte("abc")))
	f.Add(appendChunkAck(appendHeader(nil, header{kind: kindChunkAck}), chunkAck{status: ackProgress, next: 2}))
	f.Add(appendMemberBody(appendHeader(nil, header{kind: kindReply}), kindReply, memberBody{term: 1}))
	f.Add(appendHeader(nil, header{kind: kindProbe}))
	f.Add([]byte{frameVersion})
	f.Fuzz(func(t *testing.T, frame []byte) {
		h, body, err := decodeHeader(frame)
		if err != nil {
			return
		}
		switch h.kind {
		case kindRaft:
			for len(body) > 0 {
				enc, rest, err := nextRaftMsg(body)
				if err != nil {
					return
				}
				_, _ = raftwire.Unmarshal(enc)
				body = rest
			}
		case kindChunk:
			if ch, data, err := decodeChunk(body, 1<<20); err == nil && uint64(len(data)) != chunkLen(ch.total, ch.index) {
				t.Fatalf("chunk data of %d bytes accepted for chunk %+v", len(data), ch)
			}
		case kindChunkAck:
			_, _ = decodeChunkAck(body)
		default:
			_, _ = decodeMemberBody(h.kind, body)
		}
	})
}

// FuzzSealed opens arbitrary envelopes: nothing but the genuine one (and
// nothing twice) may open.
func FuzzSealed(f *testing.F) {
	a, err := NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	b, err := NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	ab, err := pairKey(a.seal, a.PublicKey(), b.SealKey(), b.PublicKey())
	if err != nil {
		f.Fatal(err)
	}
	ba, err := pairKey(b.seal, b.PublicKey(), a.SealKey(), a.PublicKey())
	if err != nil {
		f.Fatal(err)
	}
	genuine := seal(nil, ab, a.PublicKey(), b.PublicKey(), "c", 1, []byte("frame"))
	f.Add(genuine)
	f.Add(genuine[:sealOverhead])
	f.Add([]byte{sealVersion})
	f.Fuzz(func(t *testing.T, env []byte) {
		if _, err := sealOrigin(env); err != nil {
			return
		}
		_, frame, err := open(ba, b.PublicKey(), "c", env)
		if err == nil && !bytes.Equal(env, genuine) {
			t.Fatalf("a forged envelope opened: %q", frame)
		}
	})
}

// FuzzReassemble feeds arbitrary chunk bodies from two origins into the
// reassembler and checks its memory accounting.
func FuzzReassemble(f *testing.F) {
	f.Add(appendChunk(nil, chunkHeader{count: 1, total: 3}, []byte("abc")), uint64(1), false)
	f.Add(appendChunk(nil, chunkHeader{index: 1, count: 2, total: ChunkSize + 1}, []byte("x")), uint64(2), true)
	r := newReassembler(time.Second, 4*ChunkSize)
	f.Fuzz(func(t *testing.T, body []byte, id uint64, second bool) {
		var origin peerlink.PublicKey
		if second {
			origin[0] = 1
		}
		ch, data, err := decodeChunk(body, 8*ChunkSize)
		if err != nil {
			return
		}
		r.add(origin, id, ch, data, time.Unix(0, 0))
		var held int64
		for _, tr := range r.m {
			held += tr.held
		}
		if held != r.held || r.held > r.limit || len(r.m) > 2 {
			t.Fatalf("held %d (accounted %d, limit %d) in %d transfers", held, r.held, r.limit, len(r.m))
		}
	})
}

// FuzzGossip merges arbitrary gossip messages: the state must only ever
// hold entries whose signatures verify.
func FuzzGossip(f *testing.F) {
	id, err := NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	self, err := NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	e := &entry{pub: id.PublicKey(), seal: id.SealKey(), version: 1, addr: "h:1",
		meta: Meta{ClusterName: "c", ClientURLs: []string{"u"}, App: []byte("a")}, unreachable: []MemberID{3}}
	signEntry(id, e)
	f.Add(encodeEntries([][]byte{e.raw})[0])
	f.Add([]byte{gossipFormat, 1, 3, 1, 2, 3})
	f.Fuzz(func(t *testing.T, msg []byte) {
		s := newGossipState(self, time.Minute, 8, func() {})
		s.merge(msg, time.Unix(0, 0))
		for _, h := range s.live() {
			if !verifyEntry(h.e) {
				t.Fatal("an unverified entry was taken")
			}
		}
		if raws, err := splitEntries(msg); err == nil {
			for _, raw := range raws {
				if d, err := decodeEntry(raw); err == nil && checkEntryLimits(d) != nil {
					t.Fatalf("decoded an entry over its limits: %v", checkEntryLimits(d))
				}
			}
		}
	})
}

// FuzzHello decodes the app bytes of a link hello.
func FuzzHello(f *testing.F) {
	f.Add(appendHello(nil, SealKey{1}))
	f.Add([]byte{helloVersion})
	f.Fuzz(func(t *testing.T, app []byte) {
		if k, err := decodeHello(app); err == nil && !bytes.Equal(appendHello(nil, k), app) {
			t.Fatal("hello does not round-trip")
		}
	})
}

// FuzzMeshFrameCounter follows arbitrary byte streams through the
// splice's framing parser, in arbitrary pieces.
func FuzzMeshFrameCounter(f *testing.F) {
	f.Add([]byte("weave\x02\x02\x00\x00\x00\x00\x01a\x00\x00\x00\x02\x05\x00"), uint8(3))
	f.Fuzz(func(t *testing.T, stream []byte, piece uint8) {
		r := &meshRouter{}
		var out bytes.Buffer
		m := &meshFrameCounter{w: &out, r: r, skip: meshIntroLen}
		step := int(piece%16) + 1
		for i := 0; i < len(stream); i += step {
			if _, err := m.Write(stream[i:min(i+step, len(stream))]); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(out.Bytes(), stream) {
			t.Fatal("the parser changed the bytes it passed through")
		}
	})
}
