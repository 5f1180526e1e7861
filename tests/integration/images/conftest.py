"""Images built from our Dockerfiles (tools/images/images.py) and run with runc, without a kubelet.

buildah, umoci and runc come from Debian packages that tools/dev/system-packages.sh installs on first use;
when they cannot be had, these tests fail with the reason: they never skip.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from images import BuiltImage, build

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def image_tools() -> None:
    script = ROOT / "tools/dev/system-packages.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    missing = [tool for tool in ("buildah", "umoci", "runc", "mmdebstrap") if shutil.which(tool) is None]
    assert proc.returncode == 0 and not missing, (
        f"image tools missing: {missing}; tools/dev/system-packages.sh said:\n{proc.stderr}"
    )


@pytest.fixture(scope="session")
def built_image(image_tools: None) -> Callable[[str], BuiltImage]:
    """build(name), once per session (a cache hit when the inputs did not change)."""
    done: dict[str, BuiltImage] = {}

    def get(name: str) -> BuiltImage:
        if name not in done:
            done[name] = build(name)
        return done[name]

    return get
