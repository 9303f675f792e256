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
# The JSON gateway's handlers (v3lockpb/gw, v3electionpb/gw, as etcd's
# packages of the same names) come from protoc-gen-grpc-gateway run on the
# service files, with the HTTP paths in api/gateway.yaml (etcd's paths) instead
# of google.api.http annotations. The plugin writes them into the service's
# package; they are moved into gw/ and renamed, as etcd's own scripts do.
#
# The messages embed etcd's own etcdserverpb.ResponseHeader and
# mvccpb.KeyValue. protoc reads those imports (etcd/api/...) from a
# descriptor set that api/internal/protodeps writes from the etcd API module
# this module requires, so no etcd .proto sources are needed.
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12     # matches google.golang.org/protobuf in go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1  # generated code needs grpc >= 1.64
PROTOC_GEN_GRPC_GATEWAY_VERSION=v2.29.0  # matches github.com/grpc-ecosystem/grpc-gateway/v2 in go.mod

api_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
protoc=${PROTOC:-protoc}
command -v "$protoc" >/dev/null || { echo "gen.sh: protoc not found (apt-get install -y protobuf-compiler, or set PROTOC)" >&2; exit 1; }

gobin=$(mktemp -d)
trap 'rm -rf "$gobin"' EXIT
(cd "$api_dir/.." && go run ./api/internal/protodeps "$gobin/etcd-deps.pb")
GOBIN=$gobin GOFLAGS=-mod=mod go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
GOBIN=$gobin GOFLAGS=-mod=mod go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"
GOBIN=$gobin GOFLAGS=-mod=mod go install "github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@${PROTOC_GEN_GRPC_GATEWAY_VERSION}"

# The .proto files are registered under meshkv/api/..., a path that cannot
# collide with etcd's files in the global protobuf registry.
gen() {
  "$protoc" \
    --plugin=protoc-gen-go="$gobin/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="$gobin/protoc-gen-go-grpc" \
    --plugin=protoc-gen-grpc-gateway="$gobin/protoc-gen-grpc-gateway" \
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

gwtmp="$gobin/gw"
mkdir -p "$gwtmp"
gen --grpc-gateway_out="$gwtmp" --grpc-gateway_opt=module=github.com/meshkv/meshkv/api \
  --grpc-gateway_opt=standalone=true \
  --grpc-gateway_opt=grpc_api_configuration="$api_dir/gateway.yaml" \
  meshkv/api/v3lockpb/v3lock_service.proto \
  meshkv/api/v3electionpb/v3election_service.proto
for pkg in v3lockpb v3electionpb; do
  mkdir -p "$api_dir/$pkg/gw"
  for f in "$gwtmp/$pkg"/*.pb.gw.go; do
    sed -e "s/^package $pkg\$/package gw/" -e "s/^Package $pkg is a reverse proxy\./Package gw is a reverse proxy./" \
      "$f" > "$api_dir/$pkg/gw/$(basename "$f")"
  done
done

gofmt -l "$api_dir" | { ! grep . ; } || { echo "gen.sh: generated code is not gofmt-clean" >&2; exit 1; }
echo "gen.sh: regenerated $(cd "$api_dir" && ls */*.pb.go */gw/*.pb.gw.go | tr '\n' ' ')"
