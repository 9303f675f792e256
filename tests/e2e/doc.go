// Package e2e runs the real etcdctl against the real meshkv binary and
// against a real etcd process, and compares what etcdctl prints.
//
// TestMain builds etcdctl, etcdutl and etcd (from this module's etcd
// dependencies) and meshkv (../cmd/meshkv) into a temporary directory with
// `go build`.
// Each test starts its own processes on free loopback ports and stops them
// by PID when it ends. Where etcdctl's output names the server (ids, raft
// terms, versions, sizes, timings) it is normalized before comparison; where
// it cannot be compared (endpoint status, member list), its content is
// checked instead. The snapshot tests move data between meshkv and etcd
// through etcdctl snapshot save, etcdutl snapshot restore and meshkv's
// --initial-snapshot, and compare what clients read on both sides.
//
// The package has only tests; this file exists for its documentation.
package e2e
