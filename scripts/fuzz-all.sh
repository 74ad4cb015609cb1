#!/usr/bin/env bash
# Runs every `func FuzzXxx` in the module for a fixed time each, so `make
# test` exercises every parser of user input with new inputs on every run.
set -euo pipefail
fuzztime=${1:-4s}
cd "$(dirname "$0")/.."
status=0
while IFS= read -r file; do
	dir=$(dirname "$file")
	for fn in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | awk '{print $2}'); do
		echo "fuzz $dir $fn ($fuzztime)"
		if ! go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$fuzztime" "./$dir" >/tmp/fuzz-$$.log 2>&1; then
			cat /tmp/fuzz-$$.log
			status=1
		fi
	done
done < <(grep -rlE '^func Fuzz' --include='*_test.go' . | grep -v '^./tools/' | sort)
rm -f /tmp/fuzz-$$.log
exit $status
