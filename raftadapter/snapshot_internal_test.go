package raftadapter

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestSnapToken(t *testing.T) {
	tok := snapToken(1<<40 + 7)
	if len(tok) > 16 {
		t.Fatalf("token of %d bytes", len(tok))
	}
	if got, ok := parseSnapToken(tok); !ok || got != 1<<40+7 {
		t.Fatalf("parseSnapToken = %d, %v", got, ok)
	}
	for name, data := range map[string][]byte{
		"nil":       nil,
		"short":     tok[:len(tok)-1],
		"long":      append(tok[:len(tok):len(tok)], 0),
		"bad magic": append([]byte("XXXX"), tok[4:]...),
	} {
		if _, ok := parseSnapToken(data); ok {
			t.Errorf("%s: parsed as a token", name)
		}
	}
	// A token that somehow reached a follower is refused, never restored.
	if _, _, _, err := decodeSnapshot(tok); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("decodeSnapshot(token): err = %v, want ErrBadSnapshot", err)
	}
}

func TestWriteSnapshotExactSize(t *testing.T) {
	state := strings.Repeat("x", 100_000)
	data, err := writeSnapshot(newDedup().appendTo(nil), appendRemoved(nil, nil), rewriter(state))
	if err != nil {
		t.Fatal(err)
	}
	if cap(data) != len(data) {
		t.Fatalf("snapshot data: len %d, cap %d; want an exactly sized buffer", len(data), cap(data))
	}
	if _, _, sm, err := decodeSnapshot(data); err != nil || string(sm) != state {
		t.Fatalf("decodeSnapshot: %d bytes, %v", len(sm), err)
	}
}

// growing writes one more byte on every WriteTo.
type growing struct{ n int }

func (g *growing) WriteTo(w io.Writer) (int64, error) {
	g.n++
	k, err := w.Write(make([]byte, g.n))
	return int64(k), err
}

// shrinking writes one byte less on every WriteTo.
type shrinking struct{ n int }

func (s *shrinking) WriteTo(w io.Writer) (int64, error) {
	s.n--
	k, err := w.Write(make([]byte, s.n))
	return int64(k), err
}

type failing struct{}

var errWrite = errors.New("capture broken")

func (failing) WriteTo(io.Writer) (int64, error) { return 0, errWrite }

type panicking struct{}

func (panicking) WriteTo(io.Writer) (int64, error) { panic("capture exploded") }

func TestWriteSnapshotBadCapture(t *testing.T) {
	for name, tc := range map[string]struct {
		w    io.WriterTo
		want error
	}{
		"growing":   {&growing{}, errSnapshotChanged},
		"shrinking": {&shrinking{n: 10}, errSnapshotChanged},
		"failing":   {failing{}, errWrite},
	} {
		if data, err := writeSnapshot(nil, nil, tc.w); !errors.Is(err, tc.want) || data != nil {
			t.Errorf("%s: %d bytes, err %v; want %v", name, len(data), err, tc.want)
		}
	}
	if data, err := writeSnapshot(nil, nil, panicking{}); err == nil || data != nil {
		t.Errorf("panicking: %d bytes, err %v; want an error", len(data), err)
	}
}
