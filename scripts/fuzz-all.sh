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
	if ! (cd "$mod" && go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$fuzztime" "$pkg") >"$log" 2>&1; then
		cat "$log"
		status=1
	fi
done < <(targets)
exit $status
