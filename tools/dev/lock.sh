#!/usr/bin/env bash
# Refreshes the Python lock files in requirements/ from pyproject.toml (`make lock`; `make lock UPGRADE=1`
# moves every pin to the newest allowed version). One lock per use, each with the hash of every file:
#   dev.lock       base + every extra (exporter, test, lint, ...): the development venv (tools/dev/venv.sh)
#   operator.lock  base dependencies only: the operator image
#   exporter.lock  base + exporter extra (TensorFlow): the exporter and model-server stand-in images
#   build.lock     what building our own package needs (setuptools, wheel): the image builds' wheelhouse
# dev.lock is resolved first; the others are constrained by it, so a package has one version everywhere.
# pip-tools runs from its own small venv in the cache (pinned here), not from the development venv.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cache_root=${SERVEDMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servedmodel-operator}
python=${PYTHON:-python3}
piptools_version=7.6.2
pip_version=26.3
tool="$cache_root/piptools-$piptools_version-pip$pip_version"
if [ ! -f "$tool/.complete" ]; then
  echo "[lock] installing pip-tools $piptools_version into $tool" >&2
  rm -rf "$tool"
  "$python" -m venv "$tool"
  "$tool/bin/pip" install --quiet "pip==$pip_version" "pip-tools==$piptools_version" >&2
  touch "$tool/.complete"
fi
cd "$top"
upgrade=()
[ -n "${UPGRADE:-}" ] && upgrade=(--upgrade)
export CUSTOM_COMPILE_COMMAND="make lock"
compile() {  # compile OUT [pip-compile args...]
  local out=$1
  shift
  echo "[lock] requirements/$out" >&2
  "$tool/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
    --no-emit-find-links "${upgrade[@]}" -o "requirements/$out" "$@" pyproject.toml
  # The test extra names the project itself (servedmodel-operator[exporter]): pip-compile pins it as a
  # local path, which is neither portable nor hashable. The venv and the images add the project themselves.
  "$python" - "requirements/$out" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
text = re.sub(r"# WARNING: pip install will require the following package to be hashed\.\n"
              r"# Consider using a hashable URL like [^\n]*\n", "", text)
text = re.sub(r"servedmodel-operator @ file://[^\n]*\n(    # via servedmodel-operator \(pyproject\.toml\)\n)?",
              "", text)
open(path, "w").write(text)
PY
}
mkdir -p requirements
compile dev.lock --all-extras
compile operator.lock --constraint requirements/dev.lock
compile exporter.lock --extra exporter --constraint requirements/dev.lock
compile build.lock --all-build-deps --only-build-deps --constraint requirements/dev.lock
