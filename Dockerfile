# A small, static, non-root image of the meshkv binary.
#
#   docker build -t meshkv .
#   docker run --rm -p 2379:2379 meshkv --listen-client-urls http://0.0.0.0:2379 \
#       --advertise-client-urls http://127.0.0.1:2379 --mesh-listen ''
#
# deploy/compose.yaml runs a three-node cluster from it.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (no cgo), reproducible paths, VCS revision stamped for --version.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=auto -ldflags='-s -w' -o /out/meshkv ./cmd/meshkv

FROM scratch
COPY --from=build /out/meshkv /meshkv
# Any uid works: meshkv writes no files. 65532 is the conventional "nonroot".
USER 65532:65532
# 2379: etcd's client API; 2380: the mesh (peer) port.
EXPOSE 2379 2380
ENTRYPOINT ["/meshkv"]
