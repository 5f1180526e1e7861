"""What tools/images/images.py builds from: each Dockerfile reads only inputs its key covers, and the key
moves with every input and with nothing else."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import images
import pytest

ROOT = Path(__file__).resolve().parents[3]
PRODUCT_DOCKERFILES = ["operator/Dockerfile", "exporter/Dockerfile", "tools/tfserving_double/Dockerfile"]


@pytest.mark.parametrize("name", sorted(images.SPECS))
def test_dockerfile_reads_only_declared_inputs(name: str) -> None:
    spec = images.SPECS[name]
    text = (ROOT / spec.dockerfile).read_text()
    read = set(re.findall(r"/context/([\w./-]+)", text))
    assert read, f"{spec.dockerfile} reads nothing from its mounted context"
    for path in read:
        assert any(path == i or path.startswith(i.rstrip("/") + "/") for i in spec.inputs), (
            f"{spec.dockerfile} reads {path}, which is not among the inputs of {name} (so not in its key)"
        )
    assert not re.search(r"^\s*(COPY|ADD)\s", text, re.M), "sources are mounted, never copied into a layer"
    for lock in spec.locks:
        assert lock in spec.inputs and (ROOT / lock).is_file()


@pytest.mark.parametrize("dockerfile", PRODUCT_DOCKERFILES)
def test_product_dockerfiles_take_the_base_as_an_argument_and_run_non_root(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm\nFROM ${BASE_IMAGE}\n" in text
    assert 'ARG PIP_INSTALL_ARGS=""' in text
    user = re.findall(r"^USER (\d+):(\d+)$", text, re.M)
    assert len(user) == 1 and int(user[0][0]) > 0 and int(user[0][1]) > 0


def test_every_product_image_has_a_spec() -> None:
    assert {images.SPECS[n].dockerfile for n in images.PRODUCT_IMAGES} == set(PRODUCT_DOCKERFILES)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of what the operator image reads, as images.TOP."""
    for rel in ("operator/Dockerfile", *images.SPECS["operator"].inputs):
        src, dst = ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            skip = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(src, dst, ignore=skip, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
    monkeypatch.setattr(images, "TOP", tmp_path)
    return tmp_path


def test_key_moves_with_each_input_and_not_with_bytecode(tree: Path) -> None:
    spec = images.SPECS["operator"]
    key = images.spec_key(spec, "base-key")
    assert images.spec_key(spec, "base-key") == key
    assert images.spec_key(spec, "another-base") != key

    cache = tree / "operator" / "servedmodel_operator" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "render.cpython-311.pyc").write_bytes(b"\0")
    assert images.spec_key(spec, "base-key") == key

    changed = (
        "operator/servedmodel_operator/render.py",
        "requirements/operator.lock",
        "operator/Dockerfile",
    )
    for rel in changed:
        path = tree / rel
        original = path.read_bytes()
        path.write_bytes(original + b"\n# changed\n")
        assert images.spec_key(spec, "base-key") != key, rel
        path.write_bytes(original)
    assert images.spec_key(spec, "base-key") == key
    (tree / "README.md").write_text("documentation is no input of an image\n")
    assert images.spec_key(spec, "base-key") == key


def test_staged_context_holds_only_the_inputs(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    (tree / "secrets.txt").write_text("not for images")
    context = tmp_path_factory.mktemp("context")
    images._stage_context(images.SPECS["operator"], context)
    top = sorted(p.name for p in context.iterdir())
    assert top == ["exporter", "operator", "pyproject.toml", "requirements"]
    assert sorted(p.name for p in (context / "requirements").iterdir()) == ["build.lock", "operator.lock"]


def test_refs_carry_the_app_version_and_the_key() -> None:
    chart = (ROOT / "charts/servedmodel-operator/Chart.yaml").read_text()
    version = re.search(r'^appVersion: "?([^"\n]+)', chart, re.M).group(1)
    ref = images.ref_of("operator", "0123456789abcdef")
    assert ref == f"localhost/servedmodel/operator:{version}-0123456789ab"
