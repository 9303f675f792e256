// Package serve assembles a node's client port: one gRPC server (the etcd
// API, gRPC health) on the in-memory listener and on every client listener,
// where internal/clientmux also serves HTTP (/metrics, the health
// endpoints, /version, the JSON gateway and, when enabled, the profiler),
// and the metrics listeners, which serve /metrics and the health endpoints
// only, as etcd's.
//
// Start binds the metrics listeners, builds the metrics, the health checks,
// the gateway and the gRPC server, and starts one goroutine per listener
// plus the health poller and, with a mesh, its metrics sampler. Close stops
// every server, closes every listener and waits for those goroutines.
package serve
