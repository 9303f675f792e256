package kvapi

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// reportLatencies reports the median, 99th percentile and maximum of lat.
func reportLatencies(b *testing.B, lat []time.Duration) {
	b.Helper()
	slices.Sort(lat)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(us(lat[len(lat)/2]), "p50-µs")
	b.ReportMetric(us(lat[len(lat)*99/100]), "p99-µs")
	b.ReportMetric(us(lat[len(lat)-1]), "max-µs")
}

// BenchmarkWatchEventLatency measures the time from a Put's return to the
// receipt of its event by each of n watchers of the key, each on its own
// raw stream ("streams") or all on one clientv3 stream ("one-stream"). ns/op
// is the whole cycle: the Put and the delivery to every watcher. The
// p50/p99/max-µs metrics are per-delivery latencies after the Put returned
// (an event that arrives before the Put returns counts as 0).
func BenchmarkWatchEventLatency(b *testing.B) {
	type receipt struct {
		rev int64
		at  time.Time
	}
	measure := func(b *testing.B, ts *watchConnServer, n int, recv chan receipt) {
		kv := pb.NewKVClient(ts.conn)
		lat := make([]time.Duration, 0, b.N*n)
		val := []byte("value")
		b.ResetTimer()
		for range b.N {
			resp, err := kv.Put(context.Background(), &pb.PutRequest{Key: []byte("bench"), Value: val})
			if err != nil {
				b.Fatal(err)
			}
			done := time.Now()
			for range n {
				r := <-recv
				if r.rev != resp.Header.Revision {
					b.Fatalf("event at revision %d, want %d", r.rev, resp.Header.Revision)
				}
				lat = append(lat, max(r.at.Sub(done), 0))
			}
		}
		b.StopTimer()
		reportLatencies(b, lat)
	}

	for _, n := range []int{100, 1} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			ts := newWatchConnServer(b)
			recv := make(chan receipt, n)
			for range n {
				w := openRawWatch(b, ts.conn)
				id := w.created(&pb.WatchCreateRequest{Key: []byte("bench")})
				go func() {
					for {
						resp, err := w.stream.Recv()
						if err != nil {
							return
						}
						at := time.Now()
						if resp.WatchId == id && len(resp.Events) == 1 {
							recv <- receipt{resp.Events[0].Kv.ModRevision, at}
						}
					}
				}()
			}
			measure(b, ts, n, recv)
		})
	}

	b.Run("one-stream=100", func(b *testing.B) {
		const n = 100
		ts := newWatchConnServer(b)
		recv := make(chan receipt, n)
		ctx, cancel := context.WithCancel(context.Background())
		b.Cleanup(cancel)
		for range n {
			wch := ts.cli.Watch(ctx, "bench")
			go func() {
				for wr := range wch {
					at := time.Now()
					for _, e := range wr.Events {
						recv <- receipt{e.Kv.ModRevision, at}
					}
				}
			}()
		}
		if st := ts.srv.watch.stats(); st.streams != 1 || st.synced != n {
			b.Fatalf("stats %+v, want 1 stream with %d watchers", st, n)
		}
		measure(b, ts, n, recv)
	})
}

// BenchmarkWatchCatchUpLatency measures what a lock waiter sees: a watch
// created at a revision that has already passed, whose event must come from
// history at once. ns/op is the time from sending the create request to
// receiving the event, on an open stream with 100 other watchers.
func BenchmarkWatchCatchUpLatency(b *testing.B) {
	ts := newWatchConnServer(b)
	w := openRawWatch(b, ts.conn)
	for i := range 100 {
		w.created(&pb.WatchCreateRequest{Key: fmt.Appendf(nil, "other/%d", i)})
	}
	kv := pb.NewKVClient(ts.conn)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		key := fmt.Appendf(nil, "lock/%d", i)
		resp, err := kv.Put(context.Background(), &pb.PutRequest{Key: key, Value: []byte("held")})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		w.create(&pb.WatchCreateRequest{Key: key, StartRevision: resp.Header.Revision})
		created := w.recv()
		ev := w.recv()
		lat = append(lat, time.Since(start))
		if !created.Created || len(ev.Events) != 1 || ev.Events[0].Kv.ModRevision != resp.Header.Revision {
			b.Fatalf("got %v then %v", created, ev)
		}
		b.StopTimer()
		w.cancelWatch(created.WatchId)
		if r := w.recv(); !r.Canceled {
			b.Fatalf("cancel: %v", r)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportLatencies(b, lat)
}
