#!/usr/bin/env bash
# Creates (once per dependency set) the Python environment the Makefile runs everything in, and prints
# its folder. It lives outside the clone, keyed by a hash of the lock file, so a fresh clone reuses it;
# it holds the dependencies only: the project's own code is used from the clone via PYTHONPATH.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cache_root=${SERVEDMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servedmodel-operator}
python=${PYTHON:-python3}
# Keyed by the lock file (requirements/dev.lock, `make lock`) and the Python version: the venv holds
# exactly the locked versions, the same ones the images install. Comment lines ("# via ...") do not count.
lock="$top/requirements/dev.lock"
deps_hash=$(grep -v '^ *#' "$lock" | sha256sum | cut -c1-12)
pip_version=26.3
key=$("$python" -c 'import sys; print("py%d%d" % sys.version_info[:2])')-$deps_hash
venv="$cache_root/venv-$key"
if [ -f "$venv/.complete" ]; then
  echo "$venv"
  exit 0
fi
mkdir -p "$cache_root"
exec 9>"$cache_root/.venv-$key.lock"
flock 9  # two makes at once: one builds, the other waits and reuses
if [ -f "$venv/.complete" ]; then
  echo "$venv"
  exit 0
fi
echo "[venv] creating $venv (TensorFlow is large: the first time takes a few minutes)" >&2
rm -rf "$venv"
mkdir -p "$cache_root"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet "pip==$pip_version" >&2
# Hash-checking mode: every package must be in the lock with a matching hash, nothing else gets in.
"$venv/bin/pip" install --quiet --require-hashes -r "$lock" >&2
touch "$venv/.complete"
echo "$venv"
