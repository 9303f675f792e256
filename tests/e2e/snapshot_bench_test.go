package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// snapshotBenchEnv enables TestSnapshotSaveMillionKeys, which loads a
// million keys into etcd and meshkv (a minute or two, about 2 GiB of memory).
const snapshotBenchEnv = "MESHKV_SNAPSHOT_BENCH"

// rssBytes reads a process's resident set size.
func rssBytes(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// peakRSS samples a process's RSS every 10 ms until stop is called and
// returns the highest sample.
func peakRSS(pid int) (stop func() int64) {
	var (
		mu   sync.Mutex
		peak int64
		wg   sync.WaitGroup
	)
	done := make(chan struct{})
	sample := func() {
		if v, err := rssBytes(pid); err == nil {
			mu.Lock()
			peak = max(peak, v)
			mu.Unlock()
		}
	}
	wg.Go(func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			sample()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() int64 {
		close(done)
		wg.Wait()
		sample()
		return peak
	}
}

// loadKeys writes n keys of 256-byte values in txns of 100 puts, from 8
// clients at once.
func loadKeys(t *testing.T, s *server, n int) {
	t.Helper()
	val := string(bytes.Repeat([]byte{'x'}, 256))
	const batch, workers = 100, 8
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		cli := s.client(t)
		wg.Go(func() {
			for start := w * batch; start < n && errs[w] == nil; start += workers * batch {
				ops := make([]clientv3.Op, 0, batch)
				for i := start; i < min(start+batch, n); i++ {
					ops = append(ops, clientv3.OpPut(fmt.Sprintf("key/%08d", i), val))
				}
				_, errs[w] = cli.Txn(t.Context()).Then(ops...).Commit()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("load %s: %v", s.kind, err)
	}
}

// timedSave runs etcdctl snapshot save against s and measures its time and
// the server's peak RSS above its RSS before.
func timedSave(t *testing.T, s *server, path string) (took time.Duration, extraRSS, size int64) {
	t.Helper()
	before, err := rssBytes(s.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	stop := peakRSS(s.cmd.Process.Pid)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.etcdctl, "--endpoints="+s.endpoint, "--command-timeout=10m", "snapshot", "save", path)
	dieWithTest(cmd)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took = time.Since(start)
	peak := stop()
	if err != nil {
		t.Fatalf("etcdctl snapshot save from %s: %v\n%s", s.kind, err, tail(string(out), 2000))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return took, peak - before, fi.Size()
}

// TestSnapshotSaveMillionKeys measures etcdctl snapshot save of a million
// 256-byte values from etcd and from meshkv (time, peak extra resident
// memory of the server, file size), and starting from the file (etcdutl
// restore and etcd's start; meshkv's start with --initial-snapshot). Set
// MESHKV_SNAPSHOT_BENCH=1 to run it.
func TestSnapshotSaveMillionKeys(t *testing.T) {
	if os.Getenv(snapshotBenchEnv) == "" {
		t.Skipf("set %s=1 to load a million keys into etcd and meshkv and measure snapshot save", snapshotBenchEnv)
	}
	const n = 1_000_000
	dir := t.TempDir()
	type row struct {
		kind              string
		save              time.Duration
		extraRSS, size    int64
		restore, restored time.Duration
		rssAfter          int64
	}
	var rows []row
	for _, kind := range []string{"etcd", "meshkv"} {
		var s *server
		if kind == "etcd" {
			s = startEtcd(t, "--quota-backend-bytes", strconv.Itoa(8<<30))
		} else {
			s = startMeshkv(t)
		}
		loadStart := time.Now()
		loadKeys(t, s, n)
		t.Logf("%s: loaded %d keys in %v", kind, n, time.Since(loadStart).Round(time.Millisecond))
		path := filepath.Join(dir, kind+".db")
		r := row{kind: kind}
		r.save, r.extraRSS, r.size = timedSave(t, s, path)
		s.stop()

		// Start a new server from the file, as an operator would.
		start := time.Now()
		var d *server
		if kind == "etcd" {
			cport, pport := freePort(t), freePort(t)
			peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
			data := filepath.Join(dir, "restored")
			utl(t, "snapshot", "restore", path, "--name", memberName, "--data-dir", data,
				"--initial-cluster", memberName+"="+peer, "--initial-advertise-peer-urls", peer)
			r.restore = time.Since(start)
			d = startEtcdIn(t, data, cport, pport)
		} else {
			d = startMeshkv(t, "--initial-snapshot", path)
		}
		r.restored = time.Since(start)
		resp, err := d.client(t).Get(t.Context(), "key/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || resp.Count != n {
			t.Fatalf("%s restored from its snapshot: %v, %d keys", kind, err, resp.Count)
		}
		r.rssAfter, _ = rssBytes(d.cmd.Process.Pid)
		d.stop()
		rows = append(rows, r)
	}
	t.Logf("%d keys of 256 B; etcdctl snapshot save, then a new server from the file", n)
	t.Logf("%-7s %10s %14s %10s %14s %14s %12s", "server", "save", "server +RSS", "file", "etcdutl", "serving after", "RSS then")
	for _, r := range rows {
		restore := "-"
		if r.restore > 0 {
			restore = r.restore.Round(time.Millisecond).String()
		}
		t.Logf("%-7s %10v %11d MiB %6d MiB %14s %14v %8d MiB", r.kind, r.save.Round(time.Millisecond), r.extraRSS>>20,
			r.size>>20, restore, r.restored.Round(time.Millisecond), r.rssAfter>>20)
	}
}
