package bench

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestParseStatTicks(t *testing.T) {
	tests := []struct {
		name, line string
		want       uint64
		wantErr    bool
	}{
		{"plain", "1234 (meshkv) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 100 1000 500", 325, false},
		{"name with spaces and parens", "99 (a b) c)) R 1 2 3 4 5 6 7 8 9 10 11 12 0 0", 23, false},
		{"no name", "99 S 1 2 3", 0, true},
		{"truncated", "99 (x) S 1 2 3 4 5 6 7 8 9 10", 0, true},
		{"not a number", "99 (x) S 1 2 3 4 5 6 7 8 9 10 x 12", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatTicks(tt.line)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatTicks = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// fakeProc writes a proc tree with the given stat and status files per pid.
func fakeProc(t *testing.T, files map[int][2]string) procFS {
	t.Helper()
	root := t.TempDir()
	for pid, f := range files {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(f[0]), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "status"), []byte(f[1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return procFS{root: root}
}

func TestProcFSSums(t *testing.T) {
	p := fakeProc(t, map[int][2]string{
		10: {"10 (meshkv) S 1 1 1 0 -1 0 0 0 0 0 150 50 0 0", "Name:\tmeshkv\nVmPeak:\t 9000 kB\nVmRSS:\t    2048 kB\nThreads: 8\n"},
		11: {"11 (etcd) S 1 1 1 0 -1 0 0 0 0 0 100 0 0 0", "Name:\tetcd\nVmRSS:\t1024 kB\n"},
		12: {"12 (zombie) Z 1 1 1 0 -1 0 0 0 0 0 0 0 0 0", "Name:\tzombie\nState:\tZ\n"},
		13: {"13 (odd) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0", "VmRSS:\t12 MB\n"},
	})
	cpu, err := p.totalCPU([]int{10, 11})
	if err != nil || cpu != 3*time.Second {
		t.Errorf("totalCPU = %v, %v; want 3s (300 ticks at 100/s)", cpu, err)
	}
	rss, err := p.totalRSS([]int{10, 11})
	if err != nil || rss != 3072*1024 {
		t.Errorf("totalRSS = %d, %v; want %d", rss, err, 3072*1024)
	}
	for _, pid := range []int{12, 13, 99} {
		if _, err := p.totalRSS([]int{10, pid}); !errors.Is(err, ErrProc) {
			t.Errorf("totalRSS with pid %d: err %v, want ErrProc", pid, err)
		}
	}
	if _, err := p.totalCPU([]int{99}); !errors.Is(err, ErrProc) {
		t.Errorf("totalCPU of a missing pid: err %v, want ErrProc", err)
	}
}

func TestOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	pid := os.Getpid()
	before, err := ProcessCPU([]int{pid})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		after, err := ProcessCPU([]int{pid})
		if err != nil {
			t.Fatal(err)
		}
		if after > before {
			break // the busy loop below shows up in our own CPU time
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stuck at %v after 10s of busy looping", after)
		}
		for i := 0; i < 1e6; i++ {
			_ = strconv.Itoa(i)
		}
	}
	rss, err := ProcessRSS([]int{pid})
	if err != nil || rss < 1<<20 {
		t.Errorf("own RSS = %d, %v; want at least 1 MiB", rss, err)
	}
}
