#!/usr/bin/env bash
# Runs every Fuzz target of the main module for a short time (FUZZTIME,
# default 3s each), on top of the seed corpora that `go test` always runs.
# Targets are found in the *_test.go files, so a new one is fuzzed without
# being listed here.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-3s}
status=0
while IFS=: read -r file name; do
	pkg=./$(dirname "$file")
	echo "fuzz $pkg $name ($FUZZTIME)"
	if ! $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" >/tmp/fuzz-short.$$ 2>&1; then
		# Go's fuzzer can end a time-bounded run with "context deadline
		# exceeded" when the time is up mid-input, without any failing
		# input: that is the clock, not a finding.
		if grep -q 'context deadline exceeded' /tmp/fuzz-short.$$ && ! grep -q 'Failing input written' /tmp/fuzz-short.$$; then
			echo "  (ended by its deadline mid-input; no failing input)"
			continue
		fi
		cat /tmp/fuzz-short.$$
		status=1
	fi
done < <(git ls-files '*_test.go' | grep -v '^tests/' | xargs grep -Ho '^func Fuzz[A-Za-z0-9_]*' | sed 's/func //' | sort)
rm -f /tmp/fuzz-short.$$
exit $status
