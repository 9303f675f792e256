package meshtransport

import (
	"bytes"
	"errors"
	"testing"
)

// sealPair returns the AEADs of a and b for each other.
func sealPair(t *testing.T, a, b *Identity) (ab, ba interface {
	Seal(dst, nonce, plaintext, ad []byte) []byte
	Open(dst, nonce, ciphertext, ad []byte) ([]byte, error)
	NonceSize() int
	Overhead() int
}) {
	t.Helper()
	x, err := pairKey(a.seal, a.PublicKey(), b.SealKey(), b.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	y, err := pairKey(b.seal, b.PublicKey(), a.SealKey(), a.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return x, y
}

func TestSealRoundTripAndTampering(t *testing.T) {
	a, b, c := newTestIdentity(t), newTestIdentity(t), newTestIdentity(t)
	ab, ba := sealPair(t, a, b)
	frame := []byte("a frame for b")
	env := seal(nil, ab, a.PublicKey(), b.PublicKey(), "cl", 7, frame)
	if o, err := sealOrigin(env); err != nil || o != a.PublicKey() {
		t.Fatalf("origin %v %v, want a", o, err)
	}
	ctr, got, err := open(ba, b.PublicKey(), "cl", env)
	if err != nil || ctr != 7 || !bytes.Equal(got, frame) {
		t.Fatalf("open = %d %q %v, want 7 %q", ctr, got, err, frame)
	}
	// Every single bit flip is detected.
	for i := range env {
		bad := bytes.Clone(env)
		bad[i] ^= 0x10
		if _, _, err := open(ba, b.PublicKey(), "cl", bad); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
	// Another cluster name, another destination, a reflection back to the
	// origin: none authenticates.
	if _, _, err := open(ba, b.PublicKey(), "other", env); !errors.Is(err, errSealAuth) {
		t.Errorf("other cluster: %v", err)
	}
	if _, _, err := open(ab, a.PublicKey(), "cl", env); !errors.Is(err, errSealAuth) {
		t.Errorf("reflected to the origin: %v", err)
	}
	cb, _ := sealPair(t, c, b)
	if _, _, err := open(cb, b.PublicKey(), "cl", env); !errors.Is(err, errSealAuth) {
		t.Errorf("third party's key opened it: %v", err)
	}
	// Too short or another version.
	if _, _, err := open(ba, b.PublicKey(), "cl", env[:sealOverhead-1]); !errors.Is(err, errSealFormat) {
		t.Errorf("short envelope: %v", err)
	}
}

func TestSealBadPeerKey(t *testing.T) {
	a, b := newTestIdentity(t), newTestIdentity(t)
	var zero SealKey // a low-order point: the shared secret would be all zero
	if _, err := pairKey(a.seal, a.PublicKey(), zero, b.PublicKey()); err == nil {
		t.Fatal("all-zero sealing key accepted")
	}
}

func TestReplayWindow(t *testing.T) {
	var r replay
	steps := []struct {
		c    uint64
		want bool
	}{
		{0, false}, {1, true}, {1, false}, {3, true}, {2, true}, {2, false},
		{3 + replayWindow - 1, true}, {3, false}, // 3 is still in the window but seen
		{4, true}, // inside the window, unseen
		{3 + 2*replayWindow, true},
		{3 + replayWindow, false}, // fell out of the window
		{3 + 2*replayWindow - 1, true},
	}
	for i, s := range steps {
		if got := r.accept(s.c); got != s.want {
			t.Fatalf("step %d: accept(%d) = %v, want %v", i, s.c, got, s.want)
		}
	}
}
