// Package metrics exposes one node's Prometheus metrics.
//
// Every node has its own registry (New), so one process can run several
// nodes, each with its own /metrics. The registry holds:
//   - etcd's metrics, under etcd's names and labels wherever the meaning is
//     the same, so that etcd's dashboards and alerts work unchanged
//     (etcd_server_has_leader, etcd_server_proposals_committed_total,
//     etcd_mvcc_db_total_size_in_bytes, etcd_debugging_mvcc_keys_total,
//     etcd_network_peer_round_trip_time_seconds, ...);
//   - meshkv_* metrics for what etcd has no name for: each peer's path
//     (direct, relayed or dead), probe round trips, relayed traffic, path
//     switches, mesh connections, snapshot transfers, raft log length;
//   - gRPC server metrics from go-grpc-middleware's Prometheus provider, as
//     etcd registers them (grpc_server_started_total,
//     grpc_server_handled_total, ...; with Config.Extensive also
//     grpc_server_handling_seconds, as etcd's --metrics extensive);
//   - the Go runtime and process collectors (process_resident_memory_bytes,
//     which etcdctl check datascale reads, among them).
//
// Nothing is computed on the request path except atomic counter updates
// made by the packages that own the numbers: the collectors call the Server
// and Mesh sources when the registry is scraped and turn what they return
// into constant metrics. The gRPC provider's interceptors and the byte
// counting codec are the only per-request work this package adds.
//
// The package starts no goroutines.
package metrics
