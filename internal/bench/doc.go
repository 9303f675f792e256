// Package bench generates load on an etcd v3 API server (meshkv or etcd
// itself) through clientv3 and measures it: throughput, latency quantiles,
// errors, and optionally the servers' CPU time per operation and resident
// memory, read from /proc.
//
// A run is described by a Config (whose zero fields mean defaults) and
// driven by Run over clients from Dial, or over any *clientv3.Client, such as
// an embedded meshkv node's in-process client:
//
//	clients, err := bench.Dial(ctx, []string{"127.0.0.1:2379"}, 4)
//	if err != nil { ... }
//	defer bench.CloseAll(clients)
//	res, err := bench.Run(ctx, bench.Config{Workload: bench.Put, Clients: 64}, clients)
//	if err != nil { ... }
//	res.WriteText(os.Stdout)
//
// The workloads are put, get, txn (compare-and-swap on the mod revision),
// lock (clientv3/concurrency.Mutex), lease (grant, keep alive once, revoke),
// watch (write-to-event latency), mixed (a weighted choice of get, put and
// txn) and load (write the key space once). Latencies go to a log-linear
// Histogram: bounded memory, quantiles within 1%.
//
// Measurement: operations run from the start; only those that complete
// inside the measured window (after the warmup) count, and the window's
// length divides the count into a rate. Watch events count when their write
// was sent inside the window.
//
// Goroutines: Run starts one per worker, one per watcher and one for the
// progress lines; all have ended when Run returns.
package bench
