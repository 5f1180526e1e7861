#!/usr/bin/env bash
# Builds the S3-compatible object store the tests use (SeaweedFS's `weed`, whose `server -s3` mode serves
# the S3 API) from the Go module proxy, once per pinned version, into a cache folder outside the clone.
# Prints the folder that holds the binary. A second run with the same inputs only checks the cache.
# The version is pinned in objectstore/go.mod (a wrapper module: see its header).
#
#   SERVEDMODEL_CACHE   cache root (default: ${XDG_CACHE_HOME:-~/.cache}/servedmodel-operator)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
SEAWEEDFS_VERSION=$(awk '$1 == "require" && $2 == "github.com/seaweedfs/seaweedfs" { print $3; exit }' \
  "$here/objectstore/go.mod")
: "${SEAWEEDFS_VERSION:?cannot read the SeaweedFS version from objectstore/go.mod}"

cache_root=${SERVEDMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servedmodel-operator}
# The key covers the version and every input of the build, so an edited wrapper rebuilds.
inputs_hash=$(cd "$here" && cat build-objectstore.sh objectstore/go.mod objectstore/go.sum objectstore/tools.go \
  | sha256sum | cut -c1-12)
bin_dir="$cache_root/objectstore/seaweedfs-$SEAWEEDFS_VERSION-$inputs_hash"

if [ -x "$bin_dir/weed" ]; then
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || { echo "build-objectstore.sh: Go is needed to build the test object store (see README)" >&2; exit 1; }
log() { echo "[objectstore] $*" >&2; }
mkdir -p "$cache_root/objectstore"
staging=$(mktemp -d "$cache_root/objectstore/.build-XXXXXX")
trap 'rm -rf "$staging"' EXIT

export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly"
start=$(date +%s)
log "building SeaweedFS $SEAWEEDFS_VERSION (weed);"
log "a first build on 2 cores downloads ~0.5 GB of modules, takes ~4-6 minutes and ~2 GB of memory; later runs use the cache"
(cd "$here/objectstore" && go build -trimpath -ldflags "-s -w" -o "$staging/weed" github.com/seaweedfs/seaweedfs/weed)
"$staging/weed" version >/dev/null

rm -rf "$bin_dir"
mv "$staging" "$bin_dir"
trap - EXIT
log "built in $(( $(date +%s) - start ))s into $bin_dir"
echo "$bin_dir"
