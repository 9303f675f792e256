package meshkv_test

import (
	"log/slog"
	"sync/atomic"
	"testing"
)

// testLogger sends a node's logs to t.Log, so they show only for failures
// (and with -v). Mesh goroutines outlive a closed node, so lines logged after
// the test's cleanup are dropped rather than sent to a finished test.
func testLogger(t *testing.T, name string) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", name)
}

type tWriter struct {
	t    *testing.T
	done atomic.Bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(string(p))
	}
	return len(p), nil
}
