package cluster

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// procState reads a process's state letter from /proc (T: stopped).
func procState(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	// pid (comm) state ...
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		t.Fatalf("unexpected /proc stat %q", s)
	}
	return s[i+2 : i+3]
}

func sleepBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	return p
}

func TestProcessPauseResumeKill(t *testing.T) {
	sp := newSpawner()
	var wg sync.WaitGroup
	t.Cleanup(func() { wg.Wait(); sp.close() })
	p, err := startProcess(sp, &wg, sleepBinary(t), []string{"60"}, "", filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.kill() })
	if err := p.pause(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the process to stop", func() bool { return procState(t, p.pid()) == "T" })
	if !p.isPaused() {
		t.Error("isPaused = false after pause")
	}
	if err := p.resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the process to continue", func() bool { return procState(t, p.pid()) == "S" })
	if err := p.pause(); err != nil {
		t.Fatal(err)
	}
	// A paused process dies on SIGKILL too.
	if err := p.kill(); err != nil {
		t.Fatal(err)
	}
	if !p.exited() {
		t.Fatal("not reaped after kill")
	}
	if err := p.pause(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("pause after kill = %v, want ErrNotRunning", err)
	}
	if err := p.kill(); err != nil {
		t.Errorf("second kill = %v, want nil", err)
	}
}

func TestProcessExitIsNoticed(t *testing.T) {
	sp := newSpawner()
	var wg sync.WaitGroup
	t.Cleanup(func() { wg.Wait(); sp.close() })
	log := filepath.Join(t.TempDir(), "log")
	p, err := startProcess(sp, &wg, sleepBinary(t), []string{"--no-such-flag"}, "", log)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the process to exit", p.exited)
	if p.exitErr() == nil {
		t.Error("exit status of a failed process is nil")
	}
	if tail(log, 5) == "" {
		t.Error("the process's output did not reach its log")
	}
	if _, err := startProcess(sp, &wg, "/nonexistent/meshkv", nil, "", log); err == nil {
		t.Error("starting a missing binary: no error")
	}
	sp.close()
	if _, err := startProcess(sp, &wg, sleepBinary(t), []string{"1"}, "", log); !errors.Is(err, ErrClosed) {
		t.Errorf("start after the spawner closed = %v, want ErrClosed", err)
	}
}

func TestConfigValidate(t *testing.T) {
	bin := sleepBinary(t)
	if err := (Config{Binary: bin}).Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
	bad := []Config{
		{},
		{Binary: "/nonexistent/meshkv"},
		{Binary: t.TempDir()},
		{Binary: bin, Nodes: -1},
		{Binary: bin, Nodes: 99},
		{Binary: bin, TargetVoters: 4},
		{Binary: bin, Heartbeat: -time.Millisecond},
		{Binary: bin, Heartbeat: 1500 * time.Microsecond},
		{Binary: bin, Heartbeat: 300 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond},
		{Binary: bin, LogLevel: "loud"},
	}
	for _, c := range bad {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig", c, err)
		}
	}
}
