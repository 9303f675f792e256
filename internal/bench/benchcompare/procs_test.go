package main

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProcStopAndCleanup starts real processes (a shell that ignores
// SIGTERM, and one that does not) and checks that stopping the cluster ends
// both by their PIDs and removes its directory, or keeps it on request.
func TestProcStopAndCleanup(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, keep := range []bool{false, true} {
		c, err := newCluster("test", where{parent: t.TempDir(), keep: keep})
		if err != nil {
			t.Fatal(err)
		}
		polite, err := startProc("polite", c.dir, sh, "", "-c", "echo started; exec sleep 60")
		if err != nil {
			t.Fatal(err)
		}
		c.procs = append(c.procs, polite)
		stubborn, err := startProc("stubborn", c.dir, sh, "", "-c", "trap '' TERM; echo stubborn; while :; do sleep 1; done")
		if err != nil {
			c.stop()
			t.Fatal(err)
		}
		c.procs = append(c.procs, stubborn)
		stubborn.grace = 300 * time.Millisecond
		waitFor(t, func() bool {
			return strings.Contains(polite.logTail(5), "started") && strings.Contains(stubborn.logTail(5), "stubborn")
		})
		pids := c.pids()
		if len(pids) != 2 || pids[0] <= 0 || pids[1] <= 0 {
			t.Fatalf("pids = %v", pids)
		}
		dir := c.dir
		c.stop() // the stubborn one takes its grace, then SIGKILL
		for _, p := range []*proc{polite, stubborn} {
			select {
			case <-p.exited:
			default:
				t.Errorf("%s still running after stop", p.name)
			}
			if err := syscall.Kill(p.pid(), 0); err == nil {
				t.Errorf("pid %d of %s still exists", p.pid(), p.name)
			}
		}
		_, statErr := os.Stat(dir)
		if keep && statErr != nil {
			t.Errorf("keep: directory %s is gone: %v", dir, statErr)
		}
		if !keep && !os.IsNotExist(statErr) {
			t.Errorf("directory %s not removed: %v", dir, statErr)
		}
	}
}

// waitFor polls cond until it holds, for at most 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFreePortsDistinct(t *testing.T) {
	ports, err := freePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: zero or repeated", ports)
		}
		seen[p] = true
	}
}
