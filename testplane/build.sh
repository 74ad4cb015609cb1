#!/usr/bin/env bash
# testplane/build.sh: build (or reuse) the Kubernetes control plane that the
# kube suites run: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok, all from the Go module proxy, pinned by the three
# modules beside this script, plus kwok's stage files and Istio's CRDs.
#
# The binaries are cached outside the clone, in a directory keyed on the
# pinned versions and the hash of the go.sum files, so a warm run costs a
# stat. The directory of the binaries is printed on the last line of stdout:
#
#	export FLOTILLA_TEST_KUBE=$(testplane/build.sh)
#
# A cold build takes about 8 minutes of CPU on 2 cores and needs about 3 GB of
# memory at the link steps. Cache root: $FLOTILLA_TESTPLANE_CACHE, else
# /opt/flotilla-ci/testplane when writable, else $XDG_CACHE_HOME (or
# ~/.cache)/flotilla/testplane. FLOTILLA_TESTPLANE_JOBS sets the build's
# parallelism (go build -p; default: the number of CPUs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

K8S=v1.36.3
ETCD=v3.6.8
KWOK=v0.8.0
ISTIO_API=v1.31.4

log() { echo "testplane: $*" >&2; }

if [ -n "${FLOTILLA_TESTPLANE_CACHE:-}" ]; then
	root=$FLOTILLA_TESTPLANE_CACHE
elif mkdir -p /opt/flotilla-ci/testplane 2>/dev/null && [ -w /opt/flotilla-ci/testplane ]; then
	root=/opt/flotilla-ci/testplane
else
	root=${XDG_CACHE_HOME:-$HOME/.cache}/flotilla/testplane
fi
sum=$(cat "$here"/k8s/go.sum "$here"/etcd/go.sum "$here"/kwok/go.sum | sha256sum | cut -c1-12)
dir="$root/k8s-$K8S-etcd-$ETCD-kwok-$KWOK-istio-$ISTIO_API-$sum"
bin="$dir/bin"

if [ -f "$bin/.complete" ]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$dir"
# One build at a time per cache directory; a second caller waits for the first.
exec 9>"$dir/.lock"
flock 9
if [ -f "$bin/.complete" ]; then
	echo "$bin"
	exit 0
fi

start=$(date +%s)
tmp=$(mktemp -d "$dir/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "building the control plane into $bin (cold: about 8 minutes on 2 cores)"

# -mod=readonly: the go.sum files beside this script are the pins; a build
# never rewrites them.
export GOFLAGS="-mod=readonly -trimpath${FLOTILLA_TESTPLANE_JOBS:+ -p=$FLOTILLA_TESTPLANE_JOBS}"
ver="-X k8s.io/component-base/version.gitVersion=$K8S -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 -X k8s.io/client-go/pkg/version.gitVersion=$K8S"
(cd "$here/k8s" && go build -ldflags "-s -w $ver" -o "$tmp/" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
log "kube-apiserver, kube-controller-manager, kube-scheduler built ($(( $(date +%s) - start ))s)"
(cd "$here/etcd" && go build -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
log "etcd built ($(( $(date +%s) - start ))s)"
(cd "$here/kwok" && go build -ldflags "-s -w" -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok)
log "kwok built ($(( $(date +%s) - start ))s)"

# kwok ships no built-in stages: its fast node and pod stages come from its module.
kwokdir=$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
mkdir -p "$tmp/stages"
for f in node/fast/node-initialize node/heartbeat/node-heartbeat pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
	cp "$kwokdir/kustomize/stage/$f.yaml" "$tmp/stages/"
done
# Istio's CRDs, from the API module of the release whose Go client flotilla uses.
istiodir=$(GOFLAGS='' go mod download -json "istio.io/api@$ISTIO_API" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
cp "$istiodir/kubernetes/customresourcedefinitions.gen.yaml" "$tmp/istio-crds.yaml"
chmod -R u+w "$tmp"

cat >"$tmp/VERSIONS" <<EOF
kubernetes $K8S
etcd $ETCD
kwok $KWOK
istio.io/api $ISTIO_API
EOF
touch "$tmp/.complete"
rm -rf "$bin"
mv "$tmp" "$bin"
trap - EXIT
log "done in $(( $(date +%s) - start ))s"
echo "$bin"
