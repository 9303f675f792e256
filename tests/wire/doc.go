// Package wire checks that meshkv's Lock and Election protos (api/v3lockpb,
// api/v3electionpb) are wire-compatible with etcd's
// (go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb and
// .../v3election/v3electionpb): same message shapes, byte-identical encodings,
// same gRPC method paths, and clients of one family calling servers of the
// other. It has only tests; it lives in the nested tests module because it
// imports etcd's server module, which the main module must not require.
package wire
