"""One TensorFlow release for the whole project: the server the operator deploys and the exporter.

`constants.TENSORFLOW_RELEASE` declares it. A SavedModel written by a newer TensorFlow than the server's may
not load ("Op type not registered"), so the exporter's TensorFlow (pyproject pins, the locks the venv and the
exporter image install) must be the release of the default TF Serving image. README "TensorFlow version"
says how to change them together.
"""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from servedmodel_operator.constants import DEFAULT_IMAGE, TENSORFLOW_RELEASE

ROOT = Path(__file__).resolve().parents[3]


def _exporter_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["optional-dependencies"]["exporter"]]
    return {r.name: r for r in reqs}


def _locked(lock: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==(\S+)", (ROOT / "requirements" / lock).read_text(), re.M)
    assert match, f"{name} is not pinned in requirements/{lock}"
    return match.group(1)


def test_default_server_image_is_the_release() -> None:
    assert DEFAULT_IMAGE == f"tensorflow/serving:{TENSORFLOW_RELEASE}"


def test_pyproject_pins_tensorflow_and_its_serving_api_to_the_release() -> None:
    reqs = _exporter_requirements()
    for name in ("tensorflow", "tensorflow-serving-api"):
        assert str(reqs[name].specifier) == f"=={TENSORFLOW_RELEASE}", reqs[name]


def test_every_lock_installs_the_release() -> None:
    for lock in ("dev.lock", "exporter.lock"):
        assert _locked(lock, "tensorflow") == TENSORFLOW_RELEASE, lock
        assert _locked(lock, "tensorflow-serving-api") == TENSORFLOW_RELEASE, lock


def test_examples_name_the_release() -> None:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for tag in re.findall(r"tensorflow/serving:([0-9][^\s\"'-]*)", path.read_text()):
            assert tag == TENSORFLOW_RELEASE, f"{path.name} names tensorflow/serving:{tag}"


def test_the_venv_runs_the_release() -> None:
    import tensorflow as tf

    assert tf.__version__ == TENSORFLOW_RELEASE
