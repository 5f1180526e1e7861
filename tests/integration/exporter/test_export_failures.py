"""Bad inputs: each gives a clear error and exit code, and nothing is published."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import keras
import pytest
import tensorflow as tf
from servedmodel_exporter.errors import (
    EXIT_OK,
    EXIT_PUBLISH,
    EXIT_SOURCE,
    EXIT_VERIFICATION,
    EXIT_VERSION_EXISTS,
)
from servedmodel_exporter.publish import LOCK_NAME
from servedmodel_exporter.sources import file_sha256, tree_sha256

RunCli = Callable[..., tuple[int, dict, str]]


@keras.saving.register_keras_serializable(package="servedmodel_exporter_tests")
class EagerOnlyShift(keras.layers.Layer):
    """Adds 1 when run eagerly only: the traced SavedModel silently differs from the Keras model."""

    def call(self, x):  # noqa: ANN001, ANN201 (Keras signature)
        return x + 1.0 if tf.executing_eagerly() else x


def _assert_nothing_published(model_root: Path) -> None:
    leftovers = sorted(p.name for p in model_root.iterdir()) if model_root.exists() else []
    assert leftovers in ([], [LOCK_NAME]), leftovers


def _assert_failed(result: tuple[int, dict, str], code: int, message: str) -> None:
    exit_code, payload, err = result
    assert exit_code == code, err
    assert payload["ok"] is False and payload["error"]["exit_code"] == code
    assert message in payload["error"]["message"], payload["error"]["message"]
    assert f"error: {payload['error']['message']}" in err


def test_corrupt_keras_file(tmp_path: Path, base: Path, run_cli: RunCli) -> None:
    bad = tmp_path / "corrupt.keras"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive" * 10)
    _assert_failed(
        run_cli("publish", bad, "--base-path", base, "--model", "m"),
        EXIT_SOURCE,
        f"{bad} is not a valid .keras archive: it is not a zip file",
    )
    _assert_nothing_published(base / "m")


def test_truncated_keras_file(sequential, tmp_path: Path, base: Path, run_cli: RunCli) -> None:
    data = sequential.keras_path.read_bytes()
    cut = tmp_path / "truncated.keras"
    cut.write_bytes(data[: len(data) // 2])
    _assert_failed(
        run_cli("publish", cut, "--base-path", base, "--model", "m"),
        EXIT_SOURCE,
        f"{cut} is not a valid .keras archive: it is not a zip file",
    )
    _assert_nothing_published(base / "m")


def test_keras_archive_with_a_damaged_or_missing_member(
    sequential, tmp_path: Path, base: Path, run_cli: RunCli
) -> None:
    """Keras itself reports these as a missing file or a generic read error; the exporter names them."""
    with zipfile.ZipFile(sequential.keras_path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    no_config = tmp_path / "no-config.keras"
    with zipfile.ZipFile(no_config, "w") as archive:
        for name, data in members.items():
            if name != "config.json":
                archive.writestr(name, data)
    _assert_failed(
        run_cli("publish", no_config, "--base-path", base, "--model", "m"),
        EXIT_SOURCE,
        f"{no_config} is not a valid .keras archive: it lacks config.json",
    )
    damaged = tmp_path / "damaged.keras"
    with zipfile.ZipFile(damaged, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    raw = bytearray(damaged.read_bytes())
    start = raw.index(members["model.weights.h5"][:64]) + 200  # inside the stored weights: CRC breaks
    raw[start] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    _assert_failed(
        run_cli("publish", damaged, "--base-path", base, "--model", "m"),
        EXIT_SOURCE,
        f"{damaged} is not a valid .keras archive: the member model.weights.h5 is damaged",
    )
    not_h5 = tmp_path / "model.h5"
    not_h5.write_bytes(b"<html>a login page saved under a model's name</html>")
    _assert_failed(
        run_cli("publish", not_h5, "--base-path", base, "--model", "m"),
        EXIT_SOURCE,
        f"{not_h5} is not a valid HDF5 (.h5) file",
    )
    _assert_nothing_published(base / "m")


def test_corrupt_saved_model_folder(tmp_path: Path, base: Path, run_cli: RunCli) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\xff\x00garbage")
    _assert_failed(
        run_cli("publish", folder, "--base-path", base, "--model", "m"), EXIT_SOURCE, "does not load"
    )
    _assert_nothing_published(base / "m")


def test_download_and_publish_from_url(
    sequential, base: Path, http_root: tuple[Path, str], run_cli: RunCli, assert_published: Callable
) -> None:
    root, url = http_root
    shutil.copy(sequential.keras_path, root / "model.keras")
    code, result, err = run_cli(
        "publish",
        f"{url}/model.keras",
        "--base-path",
        base,
        "--model",
        "m",
        "--sha256",
        file_sha256(sequential.keras_path),
    )
    assert code == EXIT_OK, err
    assert result["source"]["uri"] == f"{url}/model.keras"
    assert "downloaded" in err
    assert_published(base / "m", {1})


def test_url_that_404s(base: Path, http_root: tuple[Path, str], run_cli: RunCli) -> None:
    _, url = http_root
    _assert_failed(
        run_cli("publish", f"{url}/missing.keras", "--base-path", base, "--model", "m"),
        EXIT_SOURCE,
        "returned HTTP 404",
    )
    _assert_nothing_published(base / "m")


def test_sha256_mismatch(sequential, base: Path, http_root: tuple[Path, str], run_cli: RunCli) -> None:
    root, url = http_root
    shutil.copy(sequential.keras_path, root / "model.keras")
    _assert_failed(
        run_cli("publish", f"{url}/model.keras", "--base-path", base, "--model", "m", "--sha256", "a" * 64),
        EXIT_SOURCE,
        f"sha256 mismatch for {url}/model.keras: expected {'a' * 64}",
    )
    _assert_nothing_published(base / "m")


def test_existing_version_is_immutable(sequential, built_models: dict, base: Path, run_cli: RunCli) -> None:
    assert (
        run_cli("publish", sequential.keras_path, "--base-path", base, "--model", "m", "--version", "3")[0]
        == EXIT_OK
    )
    before = tree_sha256(base / "m" / "3")
    _assert_failed(
        run_cli(
            "publish",
            built_models["normalized"].keras_path,
            "--base-path",
            base,
            "--model",
            "m",
            "--version",
            "3",
        ),
        EXIT_VERSION_EXISTS,
        "version 3 of m already exists",
    )
    assert tree_sha256(base / "m" / "3") == before
    assert sorted(p.name for p in (base / "m").iterdir()) == [LOCK_NAME, "3"]


@pytest.mark.parametrize("layout", ["under_a_file", "is_a_file"])
def test_base_path_not_writable(sequential, tmp_path: Path, run_cli: RunCli, layout: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file: nobody, not even root, can create folders inside it")
    base = blocker / "models" if layout == "under_a_file" else blocker
    _assert_failed(
        run_cli("publish", sequential.keras_path, "--base-path", base, "--model", "m"),
        EXIT_PUBLISH,
        "Not a directory",
    )
    assert blocker.is_file()


def test_missing_signature(sequential, base: Path, run_cli: RunCli) -> None:
    _assert_failed(
        run_cli(
            "publish", sequential.keras_path, "--base-path", base, "--model", "m", "--signature", "classify"
        ),
        EXIT_VERIFICATION,
        "has no signature 'classify'; it has ['serve', 'serving_default']",
    )
    _assert_nothing_published(base / "m")


def test_parity_failure_publishes_nothing(tmp_path: Path, base: Path, run_cli: RunCli) -> None:
    model = keras.Sequential([keras.Input((2,), name="x"), EagerOnlyShift()])
    path = tmp_path / "diverging.keras"
    model.save(path)
    _assert_failed(
        run_cli("publish", path, "--base-path", base, "--model", "m"),
        EXIT_VERIFICATION,
        "parity check failed: output_0: max abs diff 1 exceeds atol=1e-05 rtol=1e-05",
    )
    _assert_nothing_published(base / "m")
