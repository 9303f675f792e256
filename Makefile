# meshkv build, test and benchmark targets. `make help` lists them.
GO ?= go
BIN ?= bin

.PHONY: help build dist run test test-unit test-mesh fuzz-short test-etcd lint bench bench-tool bench-compare soak proto chaos chaos-short chaos-baseline clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/meshkv
	$(GO) build -buildvcs=auto -o $(BIN)/meshkv ./cmd/meshkv

DIST_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
dist: ## static release binaries for linux and darwin (amd64, arm64) in dist/, with SHA256SUMS
	rm -rf dist && mkdir -p dist
	set -e; for p in $(DIST_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; d=meshkv-$$os-$$arch; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -buildvcs=auto -ldflags='-s -w' -o dist/$$d/meshkv ./cmd/meshkv; \
	  cp LICENSE README.md dist/$$d/; \
	  tar -C dist -czf dist/$$d.tar.gz $$d; rm -rf dist/$$d; \
	done
	cd dist && sha256sum *.tar.gz > SHA256SUMS && cat SHA256SUMS

run: ## run a single node on 127.0.0.1:2379, ready for etcdctl
	$(GO) run ./cmd/meshkv

test: lint test-unit test-mesh fuzz-short test-etcd chaos-short ## everything CI runs

lint: ## gofmt and go vet, all three modules
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd tests && $(GO) vet ./...
	cd tests/client36 && $(GO) vet ./...

test-unit: ## unit tests with the race detector (in-memory transports)
	$(GO) test -race -count=1 -timeout 20m ./...

test-mesh: ## tests over real mesh routers, without -race (mesh itself has data races)
	$(GO) test -count=1 -timeout 30m -run 'Mesh|Example|Snapshot' . ./meshtransport/...

test-etcd: ## differential and etcdctl tests against real etcd (nested module tests/), and etcd 3.6 clients against meshkv (tests/client36)
	cd tests && $(GO) test -count=1 ./...
	cd tests/client36 && $(GO) test -count=1 ./...

fuzz-short: ## every fuzz target of the main module for a few seconds (FUZZTIME=3s), beyond the seed corpora
	scripts/fuzz-short.sh

bench: ## Go benchmarks of the store, raft and a node
	$(GO) test -run='^$$' -bench=. -skip='Soak|SnapshotTransfer' -benchmem -benchtime=1s ./kvapi/mvcc/ ./raftadapter/ .

bench-tool: ## build bin/meshkv-bench (load generator for any etcd v3 server, meshkv or etcd)
	$(GO) build -o $(BIN)/meshkv-bench ./cmd/meshkv-bench

bench-compare: ## meshkv vs a 3-member etcd 3.7.3 on this machine, markdown on stdout (ARGS=--full for 1M keys)
	scripts/bench-compare.sh $(ARGS)

soak: ## soak benchmark: Put/Delete churn on 3 nodes, RSS and raft log length over time (MESHKV_SOAK_DURATION)
	$(GO) test -run='^$$' -bench=BenchmarkSoakChurn -benchtime=1x -v .

chaos: build ## every chaos scenario, behind proxies and then with kernel-level faults in network namespaces (root; about 25 minutes)
	$(GO) run ./chaos run all --bin $(BIN)/meshkv --out chaos-out
	$(GO) run ./chaos run all --net netns --bin $(BIN)/meshkv --out chaos-out

chaos-short: build ## the quick chaos suite CI runs (proxy, then a moving and a one-way cut in namespaces), and the checkers' self-test
	$(GO) run ./chaos run short --bin $(BIN)/meshkv --out chaos-out
	$(GO) run ./chaos run short-netns --net netns --bin $(BIN)/meshkv --out chaos-out
	$(GO) run ./chaos selftest --bin $(BIN)/meshkv --out chaos-out

chaos-baseline: build ## availability tables, meshkv vs etcd: kernel-level faults and the 5-member literature scenarios (plain and with a follower's CPU starved), 3 runs each (root; about 90 minutes)
	$(GO) run ./chaos build-etcd --out-bin $(BIN)
	rc=0; for flavor in meshkv etcd; do \
	  args="--net netns --flavor $$flavor --bin $(BIN)/meshkv --etcd-bin $(BIN)/etcd --repeat 3 --out chaos-out"; \
	  $(GO) run ./chaos run kernel $$args || rc=$$?; \
	  $(GO) run ./chaos run literature $$args || rc=$$?; \
	  $(GO) run ./chaos run literature $$args --starve follower || rc=$$?; \
	done; exit $$rc

proto: ## regenerate the Lock and Election protos in api/ (needs protoc)
	./api/gen.sh

clean: ## remove build output
	rm -rf $(BIN) dist
