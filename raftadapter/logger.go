package raftadapter

import (
	"context"
	"fmt"
	"log/slog"

	"go.etcd.io/raft/v3"
)

// raftLogger adapts a *slog.Logger to raft's Logger. raft reports elections,
// dropped proposals and the like at Info; those go to Debug here because the
// node logs the state changes that matter (leader, membership) itself.
// Fatal and Panic log and then panic; the raft loop turns such a panic into a
// node failure instead of crashing the process.
type raftLogger struct {
	l *slog.Logger
}

var _ raft.Logger = raftLogger{}

func (r raftLogger) print(level slog.Level, v ...any) {
	if r.l.Enabled(context.Background(), level) {
		r.l.Log(context.Background(), level, fmt.Sprint(v...), "component", "raft")
	}
}

func (r raftLogger) printf(level slog.Level, format string, v ...any) {
	if r.l.Enabled(context.Background(), level) {
		r.l.Log(context.Background(), level, fmt.Sprintf(format, v...), "component", "raft")
	}
}

func (r raftLogger) Debug(v ...any) { r.print(slog.LevelDebug, v...) }

func (r raftLogger) Debugf(format string, v ...any) { r.printf(slog.LevelDebug, format, v...) }

func (r raftLogger) Info(v ...any) { r.print(slog.LevelDebug, v...) }

func (r raftLogger) Infof(format string, v ...any) { r.printf(slog.LevelDebug, format, v...) }

func (r raftLogger) Warning(v ...any) { r.print(slog.LevelWarn, v...) }

func (r raftLogger) Warningf(format string, v ...any) { r.printf(slog.LevelWarn, format, v...) }

func (r raftLogger) Error(v ...any) { r.print(slog.LevelError, v...) }

func (r raftLogger) Errorf(format string, v ...any) { r.printf(slog.LevelError, format, v...) }

func (r raftLogger) Fatal(v ...any) { r.fail(fmt.Sprint(v...)) }

func (r raftLogger) Fatalf(format string, v ...any) { r.fail(fmt.Sprintf(format, v...)) }

func (r raftLogger) Panic(v ...any) { r.fail(fmt.Sprint(v...)) }

func (r raftLogger) Panicf(format string, v ...any) { r.fail(fmt.Sprintf(format, v...)) }

func (r raftLogger) fail(msg string) {
	r.l.Error(msg, "component", "raft")
	panic("raft: " + msg)
}
