// Package e2e runs the real etcdctl against the real meshkv binary and
// against a real etcd process, and compares what etcdctl prints.
//
// TestMain builds etcdctl and etcd (from this module's etcd dependencies)
// and meshkv (../cmd/meshkv) into a temporary directory with `go build`.
// Each test starts its own processes on free loopback ports and stops them
// by PID when it ends. Where etcdctl's output names the server (ids, raft
// terms, versions, sizes, timings) it is normalized before comparison; where
// it cannot be compared (endpoint status, member list), its content is
// checked instead.
//
// The package has only tests; this file exists for its documentation.
package e2e
