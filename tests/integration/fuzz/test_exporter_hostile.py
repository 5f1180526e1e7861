"""The exporter CLI (`python -m servedmodel_exporter.cli publish`) fed hostile inputs: model names that
climb out of the base path, symlinks planted in the source or the model folder, a huge file, a .keras
archive with traversing entries. Each must end in a clear error with its documented exit code, nothing
published, and nothing outside the base path touched (a sibling folder is snapshotted before and after).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
SECRET = "TOP-SECRET-d41d8cd98f00"


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under `folder` with its content hash (or link target): to prove nothing was touched."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                out[str(p)] = "-> " + os.readlink(p)
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[str(p)] = "dir"
    return out


def published(base: Path) -> list[Path]:
    return [p for p in base.rglob("*") if p.is_dir() and p.name.isdigit()]


def secret_copies(folder: Path) -> list[Path]:
    return [
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink() and SECRET.encode() in p.read_bytes()
    ]


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    """A tiny valid .keras model and the SavedModel exported from it, made in a subprocess."""
    folder = tmp_path_factory.mktemp("sources")
    code = (
        "import keras, sys; m = keras.Sequential([keras.Input((4,), name='x'), keras.layers.Dense(2)]);"
        "m.save(sys.argv[1] + '/tiny.keras');"
        "m.export(sys.argv[1] + '/saved', format='tf_saved_model', verbose=False)"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(folder)],
        check=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
    )
    return folder / "tiny.keras"


@pytest.fixture
def sandbox(tmp_path: Path):
    base, outside = tmp_path / "base", tmp_path / "outside"
    base.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (outside / "keep").mkdir()
    return base, outside


def publish(source: Path | str, base: Path, model: str, *extra: str) -> tuple[int, dict, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "exporter"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "servedmodel_exporter.cli",
            "publish",
            str(source),
            "--base-path",
            str(base),
            "--model",
            model,
            "--json",
            "-q",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    try:
        result = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except ValueError:
        result = {"stdout": proc.stdout}
    return proc.returncode, result, proc.stderr


@pytest.mark.parametrize("model", ["../escape", "..", "a/../../b", "/abs", ".hidden", "a/b"])
def test_model_names_that_leave_the_base_path_are_usage_errors(keras_file, sandbox, model):
    base, outside = sandbox
    before = snapshot(base.parent)
    code, result, stderr = publish(keras_file, base, model)
    assert code == 2, (code, result, stderr[-2000:])
    assert result["ok"] is False and "model name" in result["error"]["message"]
    assert "Traceback" not in stderr
    assert snapshot(base.parent) == before


def test_a_huge_non_model_file_is_a_source_error(sandbox, tmp_path):
    base, outside = sandbox
    huge = tmp_path / "huge.keras"
    with open(huge, "wb") as f:  # 4 GiB, sparse: costs no disk, reads like a real file
        f.truncate(4 << 30)
    before = snapshot(outside)
    code, result, stderr = publish(huge, base, "m")
    assert code == 3, (code, result, stderr[-2000:])
    assert result["error"]["type"] == "SourceError" and "huge.keras" in result["error"]["message"]
    assert published(base) == [] and snapshot(outside) == before


def test_a_keras_archive_with_traversing_entries_writes_nothing_outside(sandbox, tmp_path):
    base, outside = sandbox
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        z.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
        z.writestr(f"../../../../../../{outside.relative_to('/')}/zipslip.txt", "pwned")
        z.writestr("/" + str(outside.relative_to("/")) + "/zipslip-abs.txt", "pwned")
        z.writestr("model.weights.h5", b"not hdf5")
    before = snapshot(outside)
    code, result, stderr = publish(evil, base, "m")
    assert code == 3, (code, result, stderr[-2000:])
    assert result["error"]["type"] == "SourceError"
    assert published(base) == [] and snapshot(outside) == before
    assert not list(Path("/").glob("zipslip*"))


def test_a_symlink_inside_a_savedmodel_source_is_refused(keras_file, sandbox, tmp_path):
    base, outside = sandbox
    source = tmp_path / "source-saved"
    subprocess.run(["cp", "-r", str(keras_file.parent / "saved"), str(source)], check=True)
    (source / "assets").mkdir(exist_ok=True)
    (source / "assets" / "leak.txt").symlink_to(outside / "secret.txt")
    code, result, stderr = publish(source, base, "m")
    assert secret_copies(base) == [], "the file outside the source was published"
    assert code != 0 and result["ok"] is False and "symlink" in result["error"]["message"].lower()


def test_a_symlinked_model_folder_is_refused(keras_file, sandbox):
    base, outside = sandbox
    (base / "m").symlink_to(outside / "keep", target_is_directory=True)
    before = snapshot(outside)
    code, result, stderr = publish(keras_file, base, "m")
    assert snapshot(outside) == before, "files were written outside the base path"
    assert code == 6 and result["ok"] is False


def test_a_symlinked_lock_file_creates_nothing_outside(keras_file, sandbox):
    base, outside = sandbox
    (base / "m").mkdir()
    (base / "m" / ".lock").symlink_to(outside / "created-by-exporter")
    before = snapshot(outside)
    code, result, stderr = publish(keras_file, base, "m")
    assert snapshot(outside) == before, "a file was created outside the base path"
    assert code == 6 and result["ok"] is False
