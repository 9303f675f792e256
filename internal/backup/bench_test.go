package backup

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshkv/meshkv/internal/etcdsnap"
	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// heapPeak samples the bytes of live and not yet collected heap objects
// every millisecond until stop is called, and returns the highest sample
// above the level at start.
func heapPeak() (stop func() (peak uint64)) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base := read()
	var max uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			if v := read(); v > max {
				max = v
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		if v := read(); v > max {
			max = v
		}
		if max < base {
			return 0
		}
		return max - base
	}
}

// millionKeys is a store of n keys with 256-byte values, as the
// benchmark figures are quoted for.
func millionKeys(b *testing.B, n int) *mvcc.Store {
	b.Helper()
	s := mvcc.New()
	val := bytes.Repeat([]byte{'x'}, 256)
	for i := range n {
		if _, err := s.Put(&pb.PutRequest{Key: fmt.Appendf(nil, "key/%08d", i), Value: val}); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkSnapshot1M measures streaming the etcd snapshot of a store with
// a million 256-byte values (Prepare and WriteTo, into a file) and loading
// it back, with the peak heap growth of each. Run it alone:
//
//	go test -run - -bench Snapshot1M -benchtime 1x ./internal/backup
func BenchmarkSnapshot1M(b *testing.B) {
	s := millionKeys(b, 1_000_000)
	path := filepath.Join(b.TempDir(), "snap.db")
	b.Run("write", func(b *testing.B) {
		for b.Loop() {
			stop := heapPeak()
			f, err := Prepare(s.Snapshot(), etcdsnap.WriteOptions{})
			if err != nil {
				b.Fatal(err)
			}
			out, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.WriteTo(out); err != nil {
				b.Fatal(err)
			}
			if err := out.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(stop())/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(f.Size())/(1<<20), "file-MiB")
		}
	})
	b.Run("load", func(b *testing.B) {
		for b.Loop() {
			stop := heapPeak()
			st, _, err := LoadFile(path, etcdsnap.ReadOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(stop())/(1<<20), "peak-heap-MiB")
			runtime.KeepAlive(st)
		}
	})
	// After a compaction at the current revision every version is kept
	// below it: the writer sorts them by revision first (a pointer each).
	if _, err := s.Compact(&pb.CompactionRequest{Revision: s.Rev()}); err != nil {
		b.Fatal(err)
	}
	b.Run("write-compacted", func(b *testing.B) {
		for b.Loop() {
			stop := heapPeak()
			f, err := Prepare(s.Snapshot(), etcdsnap.WriteOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.WriteTo(io.Discard); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(stop())/(1<<20), "peak-heap-MiB")
		}
	})
	b.Run("write-discard", func(b *testing.B) {
		for b.Loop() {
			f, err := Prepare(s.Snapshot(), etcdsnap.WriteOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.WriteTo(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
}
