// Package kvapi serves etcd's v3 gRPC API (KV, Watch, Lease, Maintenance,
// Cluster, Auth, Lock and Election) on top of the replicated MVCC store.
//
// Each RPC is a thin adapter: validate the request statically, then either
//   - turn it into an [etcdserverpb.InternalRaftRequest] and hand it to a [Replicator]
//     (writes, compactions), waiting for the result of applying it on this member, or
//   - pass a linearizability barrier ([Replicator.ReadIndex]) and read the local store
//     (linearizable reads; serializable reads skip the barrier).
//
// [StateMachine] is the other half: the replicated log calls its Apply method with
// every committed request, in log order, on every member. It decodes the request and
// applies it to the [mvcc.Store]; the value it returns reaches the waiting RPC on the
// member that proposed it.
//
// Maintenance.Snapshot streams the store as an etcd snapshot file (etcd's
// bbolt backend layout, see internal/etcdsnap) from a copy-on-write capture,
// in etcd's messages; it carries the auth state ([Config.Auth]).
//
// Authentication and roles follow etcd (package [auth] holds the state and the
// rules): a request's identity comes from its token, its client certificate
// (Config.ClientCertAuth) or the in-process connection (the application, acting
// as root); see authctx.go. Writes carry it in the proposal's header and are
// checked when applied, against the auth state at their place in the log;
// reads, watches, leases and admin calls are checked when served. The auth
// state is part of the state machine's snapshots (statemachine_auth.go).
//
// Errors are mapped to etcd's rpctypes gRPC errors here and only here, so etcd
// clients see exactly etcd's codes and messages.
//
// [Server.Stats] reports the counters etcd's metrics are made of (operations,
// watchers, leases), kept with atomic updates on the request and apply paths;
// [Server.CheckRead] and [Server.Alarms] serve the health checks.
//
// Goroutines: RPC handlers run on gRPC's goroutines (watch and keepalive
// streams each have their own send loop while open); Apply runs on the
// replicator's apply goroutine; [Server.Run] runs the background work for the
// life of the member: the lessor loop (lease expiry and checkpoints, active on
// the leader only, with short-lived goroutines for the revokes it proposes,
// waited for before Run returns) and the watch hub's progress notifications.
package kvapi
