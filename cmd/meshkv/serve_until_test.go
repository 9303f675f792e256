package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/meshkv/meshkv"
)

// fakeNode is a node whose failure and recovery the test controls.
type fakeNode struct {
	done      chan struct{}
	err       error
	recovered chan bool
}

func (f *fakeNode) Done() <-chan struct{} { return f.done }
func (f *fakeNode) Err() error            { return f.err }
func (f *fakeNode) Recover(_ context.Context, force bool) (meshkv.Recovery, error) {
	f.recovered <- force
	return meshkv.Recovery{Cluster: 2, Supersedes: 1, Applied: 7}, nil
}

func TestServeUntilExitCodes(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Run("node failed", func(t *testing.T) {
		f := &fakeNode{done: make(chan struct{}), err: meshkv.ErrRaftFailed}
		close(f.done)
		if code := serveUntil(t.Context(), f, nil, log); code != 1 {
			t.Fatalf("exit code %d after a raft failure, want 1", code)
		}
	})
	t.Run("signal", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		f := &fakeNode{done: make(chan struct{})}
		if code := serveUntil(ctx, f, nil, log); code != 0 {
			t.Fatalf("exit code %d on a stop signal, want 0", code)
		}
	})
	t.Run("recover then fail", func(t *testing.T) {
		f := &fakeNode{done: make(chan struct{}), err: errors.New("removed"), recovered: make(chan bool, 1)}
		sigc := make(chan os.Signal, 1)
		sigc <- syscall.SIGUSR2
		codec := make(chan int, 1)
		go func() { codec <- serveUntil(t.Context(), f, sigc, log) }()
		select {
		case force := <-f.recovered:
			if force {
				t.Fatal("SIGUSR2 forced the recovery")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("SIGUSR2 did not recover")
		}
		close(f.done)
		if code := <-codec; code != 1 {
			t.Fatalf("exit code %d, want 1", code)
		}
	})
}
