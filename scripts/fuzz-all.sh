#!/usr/bin/env bash
# Runs every fuzz target (`func FuzzXxx(f *testing.F)` in a _test.go file)
# of the module, and of any module nested in it, for a fixed time each, so
# `make test` exercises every parser of user input with new inputs on every
# run. Targets are found in the source, never listed here: a new one runs
# from its first commit. `fuzz-all.sh --list` prints them, one
# "dir FuzzXxx" a line. tools/ (the linters' module) and testdata/ are not
# searched.
set -euo pipefail
cd "$(dirname "$0")/.."

# targets prints "dir name" for each fuzz target, sorted.
targets() {
	find . \( -name .git -o -name testdata -o -name node_modules -o -path ./tools \) -prune -o \
		-name '*_test.go' -type f -print |
		while IFS= read -r file; do
			sed -nE 's/^func (Fuzz[A-Za-z0-9_]+)\([A-Za-z0-9_]+ \*testing\.F\).*/\1/p' "$file" |
				while IFS= read -r fn; do echo "$(dirname "$file") $fn"; done
		done | sort
}

# modroot prints the directory of the go.mod that holds dir.
modroot() {
	local d=$1
	while [ ! -f "$d/go.mod" ] && [ "$d" != "." ]; do d=$(dirname "$d"); done
	echo "$d"
}

# deadline_race says whether a failed fuzz log shows nothing but the fuzzing
# engine's own deadline: "context deadline exceeded" as the only reason, no
# panic, no failing input, no t.Error line.
deadline_race() {
	grep -q '^    context deadline exceeded$' "$1" &&
		! grep -qE 'panic:|Failing input|_test\.go:[0-9]+:' "$1"
}

if [ "${1:-}" = "--list" ]; then
	targets
	exit 0
fi
fuzztime=${1:-4s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
while read -r dir fn; do
	mod=$(modroot "$dir")
	pkg=./${dir#"$mod"}
	pkg=${pkg%/}
	pkg=${pkg/#.\/\//./}
	echo "fuzz $dir $fn ($fuzztime)"
	if (cd "$mod" && go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$fuzztime" "$pkg") >"$log" 2>&1; then
		continue
	fi
	cat "$log"
	if grep -q 'Failing input written to' "$log"; then
		# A real finding: show the input, since a CI clone's testdata/ is lost.
		sed -nE 's/.*Failing input written to (.*)$/\1/p' "$log" | while IFS= read -r in; do
			echo "--- $dir/$in:"
			cat "$dir/$in" 2>/dev/null || true
		done
		status=1
	elif deadline_race "$log"; then
		# Go's coordinator can report its own -fuzztime deadline as a failure
		# when a starved worker misses it (go.dev/issue/75804, fixed in Go
		# 1.27). No input failed, so replay the corpus, which is deterministic:
		# only a failure there counts.
		echo "fuzz $dir $fn: -fuzztime ended mid-input with no failing input (go.dev/issue/75804); replaying the corpus"
		if ! (cd "$mod" && go test -count=1 -run="^${fn}\$" "$pkg"); then
			status=1
		fi
	else
		status=1
	fi
done < <(targets)
exit $status
