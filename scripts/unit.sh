#!/usr/bin/env bash
# The race-enabled test suite (make unit), in two lanes run side by side:
# the game day (controlplane's TestPlatformGameDay: the shop's ten
# services and three chaos experiments under load, about six minutes of
# mostly waiting) in one, everything else in the other. go test runs the
# tests of one package one after another, so in the controlplane package
# the game day would otherwise add its whole length to the suite's.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
go=${GO:-go}
flags=(-race -count=1 -timeout 30m)
lane='^TestPlatformGameDay$'
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$go" test "${flags[@]}" -run "$lane" ./controlplane/ >"$log" 2>&1 &
pid=$!
"$go" test "${flags[@]}" -skip "$lane" ./...
rest=$?
wait "$pid"
game=$?
echo "--- the game day lane (go test -run '$lane' ./controlplane/):"
cat "$log"
if [ "$rest" -ne 0 ] || [ "$game" -ne 0 ]; then
	exit 1
fi
