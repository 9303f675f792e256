#!/usr/bin/env bash
# bench-compare.sh: meshkv side by side with a 3-member etcd 3.7.3 on this
# machine; prints a markdown report on stdout (progress on stderr).
#
#   scripts/bench-compare.sh                 # about 8 minutes
#   scripts/bench-compare.sh --full          # memory run with 1,000,000 keys
#   scripts/bench-compare.sh --only table --rounds 3 --json results.json
#   scripts/bench-compare.sh --help          # every flag
#
# The work is done by internal/bench/benchcompare (built to bin/bench-compare
# and run directly, so that signals reach it): it builds bin/meshkv and
# bin/etcd, starts and stops every server itself (by PID, also on Ctrl-C or
# SIGTERM) and removes their temporary directories.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
mkdir -p bin
"$GO" build -o bin/bench-compare ./internal/bench/benchcompare
exec bin/bench-compare "$@"
