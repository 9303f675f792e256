package meshtransport

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// testLogger sends Info and above to t.Log until the test ends; later lines
// (mesh's goroutines outlive a Transport) are discarded.
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	w := &testWriter{t: t}
	t.Cleanup(w.stop) // registered first, so it runs after the transports close
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

// countingHandler counts stepped messages and signals each batch.
type countingHandler struct {
	got, want atomic.Int64
	c         chan struct{}
}

func (h *countingHandler) Step(*raftpb.Message) {
	if h.got.Add(1) >= h.want.Load() {
		select {
		case h.c <- struct{}{}:
		default:
		}
	}
}
func (h *countingHandler) ReportUnreachable(uint64)                   {}
func (h *countingHandler) ReportSnapshot(uint64, raft.SnapshotStatus) {}
