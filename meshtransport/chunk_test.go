package meshtransport

import (
	"bytes"
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/peerlink"
)

// payload returns n bytes of a pattern.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// transferChunks cuts data as a sender would.
func transferChunks(data []byte) (*outTransfer, [][]byte) {
	o := newOutTransfer(1, 2, true, data, time.Unix(0, 0))
	var out [][]byte
	for i := range o.count {
		_, d := o.chunk(i)
		out = append(out, d)
	}
	return o, out
}

func TestReassembleInOrderAcks(t *testing.T) {
	var origin peerlink.PublicKey
	data := payload(3*ChunkSize + 10)
	o, chunks := transferChunks(data)
	r := newReassembler(time.Second, 1<<30)
	now := time.Unix(0, 0)
	for i, c := range chunks {
		ch, _ := o.chunk(uint32(i))
		res := r.add(origin, 1, ch, c, now)
		if i < len(chunks)-1 {
			if res.payload != nil || res.ack != (chunkAck{status: ackProgress, next: uint32(i + 1)}) {
				t.Fatalf("chunk %d: %+v", i, res)
			}
			continue
		}
		if !bytes.Equal(res.payload, data) || res.ack.status != ackDone {
			t.Fatalf("last chunk: payload %d bytes ack %+v", len(res.payload), res.ack)
		}
	}
	if r.held != 0 || len(r.m) != 0 {
		t.Fatalf("held %d bytes in %d transfers after completion", r.held, len(r.m))
	}
	// A duplicate of a completed transfer is acknowledged as done again.
	ch, _ := o.chunk(0)
	if res := r.add(origin, 1, ch, chunks[0], now); res.ack.status != ackDone || res.payload != nil {
		t.Fatalf("duplicate after completion: %+v", res)
	}
}

func TestReassembleGapAndCorruption(t *testing.T) {
	var origin peerlink.PublicKey
	o, chunks := transferChunks(payload(3 * ChunkSize))
	r := newReassembler(time.Second, 1<<30)
	now := time.Unix(0, 0)
	ch0, _ := o.chunk(0)
	ch2, _ := o.chunk(2)
	r.add(origin, 1, ch0, chunks[0], now)
	if res := r.add(origin, 1, ch2, chunks[2], now); res.ack != (chunkAck{status: ackProgress, next: 1}) || r.held != int64(len(chunks[0])) {
		t.Fatalf("gap: %+v, held %d", res, r.held)
	}
	// A chunk that disagrees with the transfer's header is refused.
	bad := ch2
	bad.sum++
	if res := r.add(origin, 1, bad, chunks[2], now); !res.refused || res.ack.status != ackRejected || r.held != 0 {
		t.Fatalf("inconsistent chunk: %+v, held %d", res, r.held)
	}
	// A payload whose checksum fails is refused at the end.
	o2, c2 := transferChunks(payload(ChunkSize + 1))
	c2[1] = bytes.Clone(c2[1])
	c2[1][0] ^= 1
	for i := range c2 {
		ch, _ := o2.chunk(uint32(i))
		res := r.add(origin, 2, ch, c2[i], now)
		if i == 1 && (res.ack.status != ackRejected || res.payload != nil) {
			t.Fatalf("corrupt payload: %+v", res)
		}
	}
}

// TestReassembleBoundsPerOrigin: one transfer per origin (a newer one
// replaces it), memory limited overall, and nothing is held for chunks
// that were not sent in order.
func TestReassembleBoundsPerOrigin(t *testing.T) {
	var a, b peerlink.PublicKey
	b[0] = 1
	o, chunks := transferChunks(payload(4 * ChunkSize))
	r := newReassembler(time.Second, 2*ChunkSize)
	now := time.Unix(0, 0)
	for i := range uint32(2) {
		ch, _ := o.chunk(i)
		if res := r.add(a, 5, ch, chunks[i], now); res.refused {
			t.Fatalf("chunk %d refused", i)
		}
	}
	// The limit is reached: another origin is refused.
	ch0, _ := o.chunk(0)
	if res := r.add(b, 1, ch0, chunks[0], now); !res.refused {
		t.Fatal("chunk beyond the memory limit accepted")
	}
	// A newer transfer from a replaces the old one and frees its memory.
	if res := r.add(a, 6, ch0, chunks[0], now); res.refused || r.held != int64(len(chunks[0])) {
		t.Fatalf("newer transfer: %+v, held %d", res, r.held)
	}
	// Chunks of the older transfer are ignored.
	ch1, _ := o.chunk(1)
	if res := r.add(a, 5, ch1, chunks[1], now); res.send || r.held != int64(len(chunks[0])) {
		t.Fatalf("stale chunk: %+v, held %d", res, r.held)
	}
	// A transfer that does not start at chunk 0 holds nothing.
	if res := r.add(b, 9, ch1, chunks[1], now); res.ack.next != 0 || r.m[b] != nil {
		t.Fatalf("transfer without its start: %+v", res)
	}
	// Idle transfers expire.
	if n := r.expire(now.Add(2 * time.Second)); n != 1 || r.held != 0 {
		t.Fatalf("expired %d, held %d", n, r.held)
	}
}

func TestOutTransferWindowAndRecovery(t *testing.T) {
	t0 := time.Unix(0, 0)
	o := newOutTransfer(1, 2, true, payload(20*ChunkSize), t0)
	var sent []uint32
	for {
		i, ok := o.due(t0)
		if !ok {
			break
		}
		sent = append(sent, i)
	}
	if len(sent) != chunkWindow {
		t.Fatalf("sent %d chunks before any ack, want the window of %d", len(sent), chunkWindow)
	}
	// Chunk 2 was lost: acks stall at 2; three duplicates go back.
	for range 2 {
		o.onAck(chunkAck{status: ackProgress, next: 2}, t0)
	}
	if o.acked != 2 || o.next != chunkWindow {
		t.Fatalf("acked %d next %d", o.acked, o.next)
	}
	for range 3 {
		o.onAck(chunkAck{status: ackProgress, next: 2}, t0)
	}
	if o.next != 2 || !o.recovering {
		t.Fatalf("after duplicate acks: next %d recovering %v, want 2 true", o.next, o.recovering)
	}
	// Without progress, the timer goes back too; after the timeout it fails.
	o.next = 5
	if o.tick(t0.Add(resendAfter+time.Millisecond), 10*time.Second); o.next != 2 {
		t.Fatalf("resend timer: next %d, want 2", o.next)
	}
	if got := o.tick(t0.Add(11*time.Second), 10*time.Second); got != transferFailed {
		t.Fatalf("timeout: %v", got)
	}
	if got := o.onAck(chunkAck{status: ackDone}, t0); got != transferDone {
		t.Fatalf("done ack: %v", got)
	}
	if got := o.onAck(chunkAck{status: ackRejected}, t0); got != transferFailed {
		t.Fatalf("rejected ack: %v", got)
	}
}
