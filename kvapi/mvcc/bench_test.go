package mvcc

import (
	"fmt"
	"runtime"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

const benchKeys = 100_000

func benchKey(i int) []byte { return fmt.Appendf(nil, "key/%012d", i) } // 16 bytes

func benchValue() []byte {
	v := make([]byte, 256)
	for i := range v {
		v[i] = byte('a' + i%26)
	}
	return v
}

// loaded returns a store holding n keys with 256-byte values.
func loaded(b *testing.B, n int) *Store {
	b.Helper()
	s := New()
	v := benchValue()
	for i := range n {
		if _, err := s.Put(&pb.PutRequest{Key: benchKey(i), Value: v}); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func BenchmarkPut(b *testing.B) {
	b.Run("new keys", func(b *testing.B) {
		s := New()
		v := benchValue()
		reqs := make([]*pb.PutRequest, b.N)
		for i := range reqs {
			reqs[i] = &pb.PutRequest{Key: benchKey(i * 7919 % max(b.N, 1)), Value: v}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := s.Put(reqs[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("overwrite", func(b *testing.B) {
		s := loaded(b, benchKeys)
		v := benchValue()
		reqs := make([]*pb.PutRequest, 1024)
		for i := range reqs {
			reqs[i] = &pb.PutRequest{Key: benchKey(i * 97 % benchKeys), Value: v}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := s.Put(reqs[i%len(reqs)]); err != nil {
				b.Fatal(err)
			}
			if i%10000 == 9999 {
				b.StopTimer()
				mustCompactB(b, s)
				b.StartTimer()
			}
		}
	})
}

func mustCompactB(b *testing.B, s *Store) {
	b.Helper()
	if _, err := s.Compact(&pb.CompactionRequest{Revision: s.Rev()}); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkRange(b *testing.B) {
	s := loaded(b, benchKeys)
	b.Run("single key", func(b *testing.B) {
		reqs := make([]*pb.RangeRequest, 1024)
		for i := range reqs {
			reqs[i] = &pb.RangeRequest{Key: benchKey(i * 97 % benchKeys)}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			resp, err := s.Range(reqs[i%len(reqs)])
			if err != nil || len(resp.Kvs) != 1 {
				b.Fatal(err)
			}
		}
	})
	b.Run("100 keys", func(b *testing.B) {
		reqs := make([]*pb.RangeRequest, 1024)
		for i := range reqs {
			start := i * 97 % (benchKeys - 100)
			reqs[i] = &pb.RangeRequest{Key: benchKey(start), RangeEnd: benchKey(start + 100)}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			resp, err := s.Range(reqs[i%len(reqs)])
			if err != nil || len(resp.Kvs) != 100 {
				b.Fatal(err)
			}
		}
	})
	b.Run("single key parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb_ *testing.PB) {
			i := 0
			for pb_.Next() {
				i++
				if _, err := s.Range(&pb.RangeRequest{Key: benchKey(i * 97 % benchKeys)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkTxn(b *testing.B) {
	b.Run("CAS", func(b *testing.B) {
		s := loaded(b, benchKeys)
		v := benchValue()
		key := benchKey(42)
		r, err := s.Range(&pb.RangeRequest{Key: key})
		if err != nil {
			b.Fatal(err)
		}
		mod := r.Kvs[0].ModRevision
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			resp, err := s.Txn(&pb.TxnRequest{
				Compare: []*pb.Compare{{Key: key, Target: pb.Compare_MOD, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_ModRevision{ModRevision: mod}}},
				Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key, Value: v}}}},
				Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: key}}}},
			})
			if err != nil || !resp.Succeeded {
				b.Fatalf("cas failed: %v", err)
			}
			mod = resp.Header.Revision
		}
	})
}

// BenchmarkMemoryPerKey reports the heap bytes per key of a store holding
// 100k keys with 256-byte values (each value its own allocation, as decoded
// requests are), keys included.
func BenchmarkMemoryPerKey(b *testing.B) {
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := New()
		for i := range benchKeys {
			if _, err := s.Put(&pb.PutRequest{Key: benchKey(i), Value: benchValue()}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perKey := float64(after.HeapAlloc-before.HeapAlloc) / benchKeys
		b.ReportMetric(perKey, "bytes/key")
		b.ReportMetric(perKey-16-256, "overhead-bytes/key")
		runtime.KeepAlive(s)
	}
}

// BenchmarkCompact compacts a store after a bulk load of fresh keys plus
// overwrites of 1% of them.
func BenchmarkCompact(b *testing.B) {
	for range b.N {
		b.StopTimer()
		s := loaded(b, benchKeys)
		v := benchValue()
		for i := range benchKeys / 100 {
			if _, err := s.Put(&pb.PutRequest{Key: benchKey(i * 100), Value: v}); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		mustCompactB(b, s)
	}
}

// BenchmarkRangeDuringWrites measures single-key reads from parallel readers
// while one writer puts continuously (the RWMutex contention case).
func BenchmarkRangeDuringWrites(b *testing.B) {
	s := loaded(b, benchKeys)
	v := benchValue()
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			if _, err := s.Put(&pb.PutRequest{Key: benchKey(n * 31 % benchKeys), Value: v}); err != nil {
				b.Error(err)
			}
			n++
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(p *testing.PB) {
		i := 0
		for p.Next() {
			i++
			if _, err := s.Range(&pb.RangeRequest{Key: benchKey(i * 97 % benchKeys)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	close(stop)
	writes := <-done
	b.ReportMetric(float64(writes)/b.Elapsed().Seconds(), "writes/s")
}
