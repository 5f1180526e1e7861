"""Resolving sources: local files and folders, http downloads from a real local server, checksums."""

from __future__ import annotations

import hashlib
import shutil
import socket
from pathlib import Path

import pytest
from servedmodel_exporter.errors import SourceError, UsageError
from servedmodel_exporter.sources import H5, KERAS, SAVED_MODEL, resolve, tree_sha256

PAYLOAD = b"not really a model, but bytes to hash" * 1000


def _write(path: Path, data: bytes = PAYLOAD) -> Path:
    path.write_bytes(data)
    return path


def test_local_keras_file_with_matching_sha256(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.keras")
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    source = resolve(str(path), tmp_path, expected_sha256=digest.upper())
    assert (source.kind, source.path, source.sha256) == (KERAS, path, digest)


def test_local_sha256_mismatch(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.h5")
    with pytest.raises(SourceError, match="sha256 mismatch .* expected 0{64}, got [0-9a-f]{64}"):
        resolve(str(path), tmp_path, expected_sha256="0" * 64)


def test_malformed_sha256_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="64 hex digits"):
        resolve(str(_write(tmp_path / "m.keras")), tmp_path, expected_sha256="abc")


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="source not found"):
        resolve(str(tmp_path / "nope.keras"), tmp_path)


def test_unknown_file_format(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot tell the format"):
        resolve(str(_write(tmp_path / "m.onnx")), tmp_path)


def test_folder_without_saved_model_pb(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="not a SavedModel"):
        resolve(str(tmp_path / "empty"), tmp_path)


def test_saved_model_folder_digest_is_stable_across_copies(tmp_path: Path) -> None:
    folder = tmp_path / "sm"
    (folder / "variables").mkdir(parents=True)
    _write(folder / "saved_model.pb", b"graph")
    _write(folder / "variables" / "variables.index", b"index")
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    source = resolve(str(folder), tmp_path, expected_sha256=tree_sha256(copy))
    assert source.kind == SAVED_MODEL
    _write(copy / "variables" / "variables.index", b"changed")
    assert tree_sha256(copy) != source.sha256


def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unsupported source scheme 'ftp'"):
        resolve("ftp://example.org/m.keras", tmp_path)


def test_http_download_streams_to_workdir_and_checks_sha256(
    tmp_path: Path, http_root: tuple[Path, str]
) -> None:
    root, url = http_root
    _write(root / "model.h5")
    work = tmp_path / "work"
    work.mkdir()
    source = resolve(f"{url}/model.h5", work, expected_sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert source.kind == H5
    assert source.path.parent == work and source.path.suffix == ".h5"
    assert source.path.read_bytes() == PAYLOAD


def test_http_sha256_mismatch(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    root, url = http_root
    _write(root / "model.keras")
    with pytest.raises(SourceError, match="sha256 mismatch"):
        resolve(f"{url}/model.keras", tmp_path, expected_sha256="f" * 64)


def test_http_404(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    _, url = http_root
    with pytest.raises(SourceError, match=r"GET .*/missing.keras returned HTTP 404"):
        resolve(f"{url}/missing.keras", tmp_path)


def test_http_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SourceError, match="download failed"):
        resolve(f"http://127.0.0.1:{port}/m.keras", tmp_path, timeout=5)
