#!/usr/bin/env bash
# Regenerates the Go code of meshkv's wire-compatible etcd protos in api/.
#
# Usage (from anywhere; Makefile: `proto: ; ./api/gen.sh`):
#   api/gen.sh
#
# Needs protoc (3.21+; e.g. apt-get install protobuf-compiler, or set PROTOC)
# and Go. The protoc plugins are installed at pinned versions into a temporary
# GOBIN, so the output does not depend on whatever is on PATH.
#
# Layout: each package has a messages file (proto package meshkv.<pkg>) that
# goes through protoc-gen-go, and a service file (proto package <pkg>, etcd's
# name) that goes through protoc-gen-go-grpc only. The service descriptor is
# deliberately never registered: etcd registers the same service names, and a
# binary that links both (the tests module does) must not panic at init.
#
# The messages embed etcd's own etcdserverpb.ResponseHeader and
# mvccpb.KeyValue. protoc reads those imports (etcd/api/...) from a
# descriptor set that api/internal/protodeps writes from the etcd API module
# this module requires, so no etcd .proto sources are needed.
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12     # matches google.golang.org/protobuf in go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1  # generated code needs grpc >= 1.64

api_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
protoc=${PROTOC:-protoc}
command -v "$protoc" >/dev/null || { echo "gen.sh: protoc not found (apt-get install -y protobuf-compiler, or set PROTOC)" >&2; exit 1; }

gobin=$(mktemp -d)
trap 'rm -rf "$gobin"' EXIT
(cd "$api_dir/.." && go run ./api/internal/protodeps "$gobin/etcd-deps.pb")
GOBIN=$gobin GOFLAGS=-mod=mod go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
GOBIN=$gobin GOFLAGS=-mod=mod go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"

# The .proto files are registered under meshkv/api/..., a path that cannot
# collide with etcd's files in the global protobuf registry.
gen() {
  "$protoc" \
    --plugin=protoc-gen-go="$gobin/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="$gobin/protoc-gen-go-grpc" \
    --proto_path=meshkv/api="$api_dir" \
    --descriptor_set_in="$gobin/etcd-deps.pb" \
    "$@"
}

cd "$api_dir"
gen --go_out="$api_dir" --go_opt=module=github.com/meshkv/meshkv/api \
  meshkv/api/v3lockpb/v3lock.proto \
  meshkv/api/v3electionpb/v3election.proto
gen --go-grpc_out="$api_dir" --go-grpc_opt=module=github.com/meshkv/meshkv/api \
  meshkv/api/v3lockpb/v3lock_service.proto \
  meshkv/api/v3electionpb/v3election_service.proto

gofmt -l "$api_dir" | { ! grep . ; } || { echo "gen.sh: generated code is not gofmt-clean" >&2; exit 1; }
echo "gen.sh: regenerated $(cd "$api_dir" && ls */*.pb.go | tr '\n' ' ')"
