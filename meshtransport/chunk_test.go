package meshtransport

import (
	"bytes"
	"hash/crc32"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/weaveworks/mesh"
)

// split cuts payload into decoded chunks as a receiver would see them.
func split(t *testing.T, payload []byte) []struct {
	ch   chunkHeader
	data []byte
} {
	t.Helper()
	total := uint64(len(payload))
	count := uint32((total + ChunkSize - 1) / ChunkSize)
	sum := crc32.Checksum(payload, castagnoli)
	var out []struct {
		ch   chunkHeader
		data []byte
	}
	for i := range count {
		start := uint64(i) * ChunkSize
		data := payload[start : start+chunkLen(total, i)]
		ch, d, err := decodeChunk(chunkBody(total, i, data, sum))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, struct {
			ch   chunkHeader
			data []byte
		}{ch, d})
	}
	return out
}

func randomPayload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestReassembleShuffledWithDuplicates(t *testing.T) {
	payload := randomPayload(3*ChunkSize+100, 1)
	chunks := split(t, payload)
	order := []int{3, 1, 1, 0, 3, 2} // reordered, with duplicates
	r := newReassembler(time.Minute, 1<<30)
	key := transferKey{origin: 7, id: 1}
	now := time.Unix(0, 0)
	for i, idx := range order {
		got, out := r.add(key, chunks[idx].ch, chunks[idx].data, now)
		if i < len(order)-1 {
			if out != addPending {
				t.Fatalf("step %d: outcome %v, want pending", i, out)
			}
			continue
		}
		if out != addComplete || !bytes.Equal(got, payload) {
			t.Fatalf("last step: outcome %v, payload equal %v", out, bytes.Equal(got, payload))
		}
	}
	if r.held != 0 || len(r.partial) != 0 {
		t.Fatalf("held %d bytes in %d partials after completion", r.held, len(r.partial))
	}
	// A late duplicate is answered (acked again) but not delivered twice.
	if got, out := r.add(key, chunks[0].ch, chunks[0].data, now); out != addDuplicate || got != nil {
		t.Fatalf("late duplicate: %v %v", out, got != nil)
	}
}

func TestReassembleRejectsBadPayloadSum(t *testing.T) {
	payload := randomPayload(ChunkSize+10, 2)
	chunks := split(t, payload)
	// Both chunks verify individually but claim a wrong whole-payload sum.
	r := newReassembler(time.Minute, 1<<30)
	key := transferKey{origin: 1, id: 1}
	for i := range chunks {
		chunks[i].ch.sum ^= 1
		_, out := r.add(key, chunks[i].ch, chunks[i].data, time.Unix(0, 0))
		if i == len(chunks)-1 && out != addRejected {
			t.Fatalf("outcome %v, want rejected", out)
		}
	}
	if _, out := r.add(key, chunks[0].ch, chunks[0].data, time.Unix(0, 0)); out != addRejected {
		t.Fatalf("duplicate of a rejected transfer: %v, want rejected", out)
	}
}

func TestReassembleInconsistentChunks(t *testing.T) {
	a := split(t, randomPayload(ChunkSize+10, 3))
	b := split(t, randomPayload(2*ChunkSize+10, 4))
	r := newReassembler(time.Minute, 1<<30)
	key := transferKey{origin: 1, id: 1}
	if _, out := r.add(key, a[0].ch, a[0].data, time.Unix(0, 0)); out != addPending {
		t.Fatal(out)
	}
	if _, out := r.add(key, b[1].ch, b[1].data, time.Unix(0, 0)); out != addRejected {
		t.Fatalf("chunk of a different payload under the same id: %v, want rejected", out)
	}
	if r.held != 0 {
		t.Fatalf("held = %d after rejection", r.held)
	}
}

func TestReassembleMemoryBoundAndEviction(t *testing.T) {
	r := newReassembler(time.Minute, ChunkSize+ChunkSize/2)
	now := time.Unix(0, 0)
	big := split(t, randomPayload(3*ChunkSize, 5))
	if _, out := r.add(transferKey{1, 1}, big[0].ch, big[0].data, now); out != addPending {
		t.Fatal(out)
	}
	if _, out := r.add(transferKey{1, 1}, big[1].ch, big[1].data, now); out != addRejected {
		t.Fatalf("over the memory bound: %v, want rejected", out)
	}
	if r.held != 0 {
		t.Fatalf("held = %d", r.held)
	}

	// Per origin, a third concurrent transfer evicts the oldest.
	r = newReassembler(time.Minute, 1<<30)
	for id := uint64(1); id <= 3; id++ {
		if _, out := r.add(transferKey{9, id}, big[0].ch, big[0].data, now); out != addPending {
			t.Fatal(out)
		}
	}
	if _, ok := r.partial[transferKey{9, 1}]; ok || len(r.partial) != maxPartialsPerOrigin {
		t.Fatalf("partials = %v, want the oldest evicted", r.partial)
	}
	if r.held != int64(maxPartialsPerOrigin*ChunkSize) {
		t.Fatalf("held = %d", r.held)
	}
	// Another origin is not affected.
	if _, out := r.add(transferKey{8, 1}, big[0].ch, big[0].data, now); out != addPending || len(r.partial) != 3 {
		t.Fatalf("%v %d", out, len(r.partial))
	}
}

func TestReassembleExpire(t *testing.T) {
	r := newReassembler(10*time.Second, 1<<30)
	c := split(t, randomPayload(2*ChunkSize, 6))
	t0 := time.Unix(100, 0)
	r.add(transferKey{1, 1}, c[0].ch, c[0].data, t0)
	if n := r.expire(t0.Add(5 * time.Second)); n != 0 {
		t.Fatalf("expired %d too early", n)
	}
	r.add(transferKey{1, 1}, c[0].ch, c[0].data, t0.Add(5*time.Second)) // a duplicate refreshes it
	if n := r.expire(t0.Add(12 * time.Second)); n != 0 {
		t.Fatalf("expired %d after recent progress", n)
	}
	if n := r.expire(t0.Add(16 * time.Second)); n != 1 || r.held != 0 {
		t.Fatalf("expired %d, held %d; want 1, 0", n, r.held)
	}
}

func TestOutTransfers(t *testing.T) {
	o := newOutTransfers()
	t0 := time.Unix(0, 0)
	o.start(1, &outTransfer{dst: 5, raftTo: 2, snap: true})
	o.start(2, &outTransfer{dst: 6, raftTo: 3})
	o.start(3, &outTransfer{dst: 7, raftTo: 4})
	if _, ok := o.finish(1, mesh.PeerName(99), true); ok {
		t.Fatal("an ack from the wrong peer finished a transfer")
	}
	if res, ok := o.finish(1, 5, true); !ok || !res.ok || !res.snap || res.raftTo != 2 {
		t.Fatalf("finish = %+v %v", res, ok)
	}
	if _, ok := o.finish(1, 5, true); ok {
		t.Fatal("a duplicate ack finished it twice")
	}
	o.written(2, t0.Add(time.Second))
	// 3 is still being written: no deadline yet, only its peer leaving fails it.
	if got := o.expire(t0.Add(2*time.Second), nil); len(got) != 1 || got[0].raftTo != 3 {
		t.Fatalf("expire = %+v, want transfer 2 (raft 3)", got)
	}
	if got := o.expire(t0.Add(time.Hour), map[mesh.PeerName]bool{7: true}); len(got) != 1 || got[0].raftTo != 4 || got[0].ok {
		t.Fatalf("expire gone = %+v", got)
	}
	if o.pending() != 0 {
		t.Fatalf("%d pending", o.pending())
	}
}
