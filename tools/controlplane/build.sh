#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# kwok) from the Go module proxy, once per pinned version, into a cache folder outside the clone.
# Prints the folder that holds the binaries. A second run with the same versions only checks the cache.
#
#   SERVEDMODEL_CACHE   cache root (default: ${XDG_CACHE_HOME:-~/.cache}/servedmodel-operator)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
required() { awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) { print $NF == "indirect" ? $(NF-2) : $NF; exit }' "$here/$1/go.mod"; }
KUBE_VERSION=$(required kube k8s.io/kubernetes)
ETCD_VERSION=$(required etcd go.etcd.io/etcd/server/v3)
KWOK_VERSION=$(required kwok sigs.k8s.io/kwok)
: "${KUBE_VERSION:?cannot read the Kubernetes version from kube/go.mod}"
: "${ETCD_VERSION:?cannot read the etcd version from etcd/go.mod}"
: "${KWOK_VERSION:?cannot read the kwok version from kwok/go.mod}"

cache_root=${SERVEDMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servedmodel-operator}
# The key covers the versions and every input of the build, so an edited wrapper rebuilds.
# The node's kubelet and kube-proxy (kube/cmd/kubelet, kube/cmd/kube-proxy) are built by build-node.sh.
commands=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
mains=(); for c in "${commands[@]}"; do mains+=("kube/cmd/$c/main.go"); done
inputs_hash=$(cd "$here" && cat build.sh kube/go.mod kube/go.sum etcd/go.mod etcd/go.sum kwok/go.mod kwok/go.sum \
  "${mains[@]}" etcd/main.go | sha256sum | cut -c1-12)
bin_dir="$cache_root/controlplane/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-$inputs_hash"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

complete() {
  for b in "${binaries[@]}"; do [ -x "$bin_dir/$b" ] || return 1; done
  [ -s "$bin_dir/kwok-stages.yaml" ]
}

if complete; then
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: Go is needed to build the test control plane (see README)" >&2; exit 1; }
log() { echo "[controlplane] $*" >&2; }
staging=$(mktemp -d "$cache_root/controlplane/.build-XXXXXX" 2>/dev/null || { mkdir -p "$cache_root/controlplane"; mktemp -d "$cache_root/controlplane/.build-XXXXXX"; })
trap 'rm -rf "$staging"' EXIT

export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly"
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
stamp="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1"
stamp="$stamp -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
stamp="$stamp -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1"
stamp="$stamp -X k8s.io/client-go/pkg/version.gitMinor=$minor"

start=$(date +%s)
log "building Kubernetes $KUBE_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl);"
log "a first build on 2 cores downloads ~1 GB of modules and takes 10-30 minutes; later runs use the cache"
(cd "$here/kube" && go build -trimpath -ldflags "-s -w $stamp" -o "$staging/" "${commands[@]/#/./cmd/}")
log "building etcd $ETCD_VERSION"
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$staging/etcd" .)
log "building kwok $KWOK_VERSION"
(cd "$here/kwok" && go build -trimpath -ldflags "-s -w" -o "$staging/kwok" sigs.k8s.io/kwok/cmd/kwok)
# kwok simulates nothing without stages: take its stock "fast" node and pod stages from the same module.
kwok_src=$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
for stage in node/fast/node-initialize node/heartbeat/node-heartbeat pod/fast/pod-ready pod/fast/pod-complete \
  pod/fast/pod-delete; do
  cat "$kwok_src/kustomize/stage/$stage.yaml"
  echo "---"
done > "$staging/kwok-stages.yaml"

mkdir -p "$(dirname "$bin_dir")"
rm -rf "$bin_dir"
mv "$staging" "$bin_dir"
trap - EXIT
log "built in $(( $(date +%s) - start ))s into $bin_dir"
echo "$bin_dir"
