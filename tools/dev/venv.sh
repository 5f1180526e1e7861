#!/usr/bin/env bash
# Creates (once per dependency set) the Python environment the Makefile runs everything in, and prints
# its folder. It lives outside the clone, keyed by a hash of pyproject.toml, so a fresh clone reuses it;
# it holds the dependencies only: the project's own code is used from the clone via PYTHONPATH.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cache_root=${SERVEDMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servedmodel-operator}
python=${PYTHON:-python3}
# Keyed by the dependency lists only, so editing tool settings in pyproject.toml does not rebuild it.
deps_hash=$("$python" - "$top/pyproject.toml" <<'PY'
import hashlib, json, sys
try:
    import tomllib
    project = tomllib.load(open(sys.argv[1], "rb"))["project"]
    text = json.dumps([project.get("dependencies"), project.get("optional-dependencies")], sort_keys=True)
except ImportError:  # Python 3.10: no TOML parser in the standard library
    text = open(sys.argv[1]).read()
print(hashlib.sha256(text.encode()).hexdigest()[:12])
PY
)
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
"$venv/bin/pip" install --quiet --upgrade pip >&2
"$venv/bin/pip" install --quiet "$top[test,lint]" >&2
# Keep the dependencies, drop the installed copy of the project: the clone's own code must win.
"$venv/bin/pip" uninstall --quiet --yes servedmodel-operator >&2
touch "$venv/.complete"
echo "$venv"
