package peerlink

import (
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// streamPair opens a stream from a to b and returns both ends.
func streamPair(t *testing.T, a, b *testNode) (*Stream, *Stream) {
	t.Helper()
	got := make(chan *Stream, 1)
	b.rec.mu.Lock()
	b.rec.onStream = func(_ PublicKey, s *Stream) { got <- s }
	b.rec.mu.Unlock()
	sa, err := a.OpenStream(b.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case sb := <-got:
		t.Cleanup(func() { _ = sa.Close(); _ = sb.Close() })
		return sa, sb
	case <-time.After(10 * time.Second):
		t.Fatal("peer never got the stream")
	}
	return nil, nil
}

// pump writes size pseudo-random bytes in random-sized writes and returns
// their hash.
func pump(t *testing.T, w io.Writer, size int, seed uint64) [32]byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	h := sha256.New()
	buf := make([]byte, 100<<10)
	for size > 0 {
		n := min(size, 1+rng.IntN(len(buf)))
		for i := range buf[:n] {
			buf[i] = byte(rng.Uint32())
		}
		h.Write(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			t.Errorf("write: %v", err)
			break
		}
		size -= n
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

func drain(r io.Reader, size int) ([32]byte, error) {
	h := sha256.New()
	_, err := io.CopyN(h, r, int64(size))
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, err
}

func TestStreamOrderedUnderLoad(t *testing.T) {
	small := func(c *Config) { c.StreamWindow = 256 << 10 }
	a, b := newTestNode(t, small, patient), newTestNode(t, small, patient)
	connect(t, a, b)
	sa, sb := streamPair(t, a, b)
	const size = 16 << 20
	var wg sync.WaitGroup
	var sentAB, sentBA, gotAB, gotBA [32]byte
	var errAB, errBA error
	wg.Go(func() { sentAB = pump(t, sa, size, 1) })
	wg.Go(func() { sentBA = pump(t, sb, size, 2) })
	wg.Go(func() { gotAB, errAB = drain(sb, size) })
	wg.Go(func() { gotBA, errBA = drain(sa, size) })
	// Datagrams share the link meanwhile.
	wg.Go(func() { sendAll(t, a, b.PublicKey(), numbered("alongside", 2000)) })
	wg.Wait()
	if errAB != nil || errBA != nil || gotAB != sentAB || gotBA != sentBA {
		t.Fatalf("stream corrupted: a->b %v (match %v), b->a %v (match %v)", errAB, gotAB == sentAB, errBA, gotBA == sentBA)
	}
	waitFor(t, 10*time.Second, "datagrams", func() bool { return b.rec.count("dg") == 2000 })
}

func TestStreamFlowControlBoundsBuffers(t *testing.T) {
	const window = 128 << 10
	small := func(c *Config) { c.StreamWindow = window }
	a, b := newTestNode(t, small, patient), newTestNode(t, small, patient)
	connect(t, a, b)
	sa, sb := streamPair(t, a, b) // sb is never read until later
	var written atomic.Int64
	done := make(chan error, 1)
	go func() {
		chunk := make([]byte, 8<<10)
		for range 64 { // 512 KiB, four windows
			n, err := sa.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	waitFor(t, 10*time.Second, "writer to fill the window", func() bool { return written.Load() >= window })
	time.Sleep(200 * time.Millisecond) // give a runaway writer the chance to overrun
	if w := written.Load(); w > window {
		t.Fatalf("writer queued %d bytes with a window of %d and a reader that stopped", w, window)
	}
	la := a.currentLink(b.PublicKey())
	la.mu.Lock()
	queued := 0
	for _, r := range la.sq {
		queued += len(r.data)
	}
	la.mu.Unlock()
	sb.mu.Lock()
	buffered := sb.rlen
	sb.mu.Unlock()
	if queued+buffered > window {
		t.Fatalf("sender queue %d + receiver buffer %d exceed the window %d", queued, buffered, window)
	}
	select {
	case err := <-done:
		t.Fatalf("writer finished (%v) although the reader stopped", err)
	default:
	}
	if _, err := drain(sb, 64*8<<10); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestStreamEndsWhenLinkDies(t *testing.T) {
	a, b := newTestNode(t), newTestNode(t)
	connect(t, a, b)
	sa, sb := streamPair(t, a, b)
	if _, err := sb.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 6)
		if _, err := io.ReadFull(sa, buf); err != nil || string(buf) != "before" {
			readErr <- errors.New("lost bytes written before the link died")
			return
		}
		_, err := sa.Read(buf)
		readErr <- err
	}()
	time.Sleep(20 * time.Millisecond)
	_ = a.currentLink(b.PublicKey()).conn.Close()
	select {
	case err := <-readErr:
		if !errors.Is(err, ErrConnLost) {
			t.Fatalf("read after link death: %v, want ErrConnLost", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read still blocked after the link died")
	}
	if _, err := sa.Write([]byte("after")); err == nil {
		t.Fatal("write on a dead link succeeded")
	}
	waitFor(t, 5*time.Second, "b's end to fail", func() bool {
		_, err := sb.Write([]byte("x"))
		return err != nil
	})
}

func TestStreamClose(t *testing.T) {
	a, b := newTestNode(t), newTestNode(t)
	connect(t, a, b)
	sa, sb := streamPair(t, a, b)
	if _, err := sa.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := sa.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(sb)
	if err != nil || string(got) != "last words" {
		t.Fatalf("peer read %q, %v; want the bytes then EOF", got, err)
	}
	if _, err := sb.Write([]byte("too late")); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("write after peer close: %v", err)
	}
	if _, err := sa.Read(make([]byte, 1)); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("read after close: %v", err)
	}
	waitFor(t, 5*time.Second, "stream slots freed", func() bool {
		return a.Links()[0].Streams == 0 && b.Links()[0].Streams == 0
	})
}

func TestMaxStreams(t *testing.T) {
	a := newTestNode(t, func(c *Config) { c.MaxStreams = 3 })
	b := newTestNode(t, func(c *Config) { c.MaxStreams = 2 })
	connect(t, a, b)
	var held []*Stream
	b.rec.mu.Lock()
	b.rec.onStream = func(_ PublicKey, s *Stream) { held = append(held, s) }
	b.rec.mu.Unlock()
	var mine []*Stream
	for range 3 {
		s, err := a.OpenStream(b.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, s)
	}
	if _, err := a.OpenStream(b.PublicKey()); !errors.Is(err, ErrTooManyStreams) {
		t.Fatalf("fourth stream: %v, want ErrTooManyStreams", err)
	}
	// b accepts two and refuses the third: its reader sees EOF.
	if _, err := mine[2].Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("refused stream read: %v, want EOF", err)
	}
	waitFor(t, 5*time.Second, "slot of the refused stream freed", func() bool { return a.Links()[0].Streams == 2 })
	if _, err := a.OpenStream(b.PublicKey()); err != nil {
		t.Fatalf("open after a slot was freed: %v", err)
	}
	b.rec.mu.Lock()
	if len(held) != 2 {
		t.Errorf("b accepted %d streams, want 2", len(held))
	}
	b.rec.mu.Unlock()
	if _, err := b.OpenStream(stranger(t)); !errors.Is(err, ErrNoLink) {
		t.Errorf("open to unknown peer: %v", err)
	}
}

func stranger(t *testing.T) PublicKey {
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id.PublicKey()
}
