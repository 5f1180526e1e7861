"""Resolve a model source (local path or http(s) URL) to a local file or folder with a known sha256.

URLs are streamed to a temporary file so large models never sit in memory, and the checksum is computed
while downloading, so ``--sha256`` costs no extra pass.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import requests

from .errors import NoSpaceError, SourceError, SourceUnavailableError, UsageError, is_no_space

log = logging.getLogger(__name__)

KERAS = "keras"
H5 = "h5"
SAVED_MODEL = "saved_model"

_CHUNK = 1 << 20
_RETRYABLE_HTTP = (408, 425, 429, 500, 502, 503, 504)
_SUFFIX_KINDS = {".keras": KERAS, ".h5": H5, ".hdf5": H5}


@dataclass(frozen=True)
class Source:
    """A model available on the local disk."""

    uri: str
    path: Path
    kind: str
    sha256: str


def resolve(uri: str, workdir: Path, expected_sha256: str | None = None, timeout: float = 60.0) -> Source:
    """Fetch ``uri`` if it is a URL, identify the model format and check ``expected_sha256``."""
    expected = _normalize_digest(expected_sha256)
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("http", "https"):
        path, digest = _download(uri, workdir, timeout)
    elif scheme in ("", "file"):
        path = Path(urlparse(uri).path if scheme == "file" else uri)
        if not path.exists():
            raise SourceError(f"source not found: {path}")
        digest = tree_sha256(path) if path.is_dir() else file_sha256(path)
    else:
        raise UsageError(
            f"unsupported source scheme {scheme!r} in {uri!r}: use a local path or an http(s) URL"
        )
    if expected is not None and digest != expected:
        raise SourceError(f"sha256 mismatch for {uri}: expected {expected}, got {digest}")
    return Source(uri=uri, path=path, kind=_kind_of(path, uri), sha256=digest)


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_KERAS_MEMBERS = ("config.json", "metadata.json")


def check_file_format(path: Path, kind: str, uri: str) -> None:
    """Name what is wrong with a corrupt file here, before Keras reports something unrelated about it."""
    if kind == KERAS:
        problem = _keras_archive_problem(path)
        if problem:
            raise SourceError(f"{uri} is not a valid .keras archive: {problem}")
    elif kind == H5:
        with open(path, "rb") as f:
            if f.read(len(_HDF5_SIGNATURE)) != _HDF5_SIGNATURE:
                raise SourceError(
                    f"{uri} is not a valid HDF5 (.h5) file: it does not start with the HDF5 signature"
                )


def _keras_archive_problem(path: Path) -> str | None:
    if not zipfile.is_zipfile(path):
        return "it is not a zip file (truncated, corrupt, or another format saved under a .keras name)"
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            damaged = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError) as exc:
        return f"its zip data cannot be read ({exc})"
    if damaged is not None:
        return f"the member {damaged} is damaged (checksum mismatch)"
    missing = [name for name in _KERAS_MEMBERS if name not in names]
    if missing:
        return f"it lacks {', '.join(missing)} (a Keras 3 .keras file holds config.json and metadata.json)"
    return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def refuse_symlinks(root: Path) -> None:
    """A SavedModel folder holds files and folders only. A symlink could make the exporter publish (and
    hash) whatever it points to, such as a pod's service-account token, so it is refused."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            raise SourceError(f"the SavedModel source contains a symlink, which is refused: {path}")


def tree_sha256(root: Path) -> str:
    """Digest of a folder: sorted relative paths with each file's sha256, so it is stable across copies."""
    refuse_symlinks(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _normalize_digest(value: str | None) -> str | None:
    if value is None:
        return None
    digest = value.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise UsageError(f"--sha256 must be 64 hex digits, got {value!r}")
    return digest


def _kind_of(path: Path, uri: str) -> str:
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return SAVED_MODEL
        raise SourceError(f"{uri} is a folder without saved_model.pb, so it is not a SavedModel")
    kind = _SUFFIX_KINDS.get(Path(urlparse(uri).path).suffix.lower())
    if kind is None:
        raise SourceError(
            f"cannot tell the format of {uri}: expected a .keras or .h5 file or a SavedModel folder"
        )
    return kind


def _download(url: str, workdir: Path, timeout: float) -> tuple[Path, str]:
    suffix = Path(urlparse(url).path).suffix
    fd, name = tempfile.mkstemp(prefix="download-", suffix=suffix, dir=workdir)
    digest = hashlib.sha256()
    done = total = 0
    try:
        with requests.get(url, stream=True, timeout=timeout) as response, os.fdopen(fd, "wb") as out:
            if response.status_code != 200:
                message = f"download failed: GET {url} returned HTTP {response.status_code}"
                if response.status_code in _RETRYABLE_HTTP:
                    raise SourceUnavailableError(message)
                raise SourceError(message)
            total = int(response.headers.get("Content-Length") or 0)
            done, next_report = 0, 0.0
            for chunk in response.iter_content(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if total and done / total >= next_report:
                    log.info("downloading %s: %d%% of %.1f MB", url, 100 * done // total, total / 1e6)
                    next_report += 0.1
    except requests.RequestException as exc:  # urllib3 also raises here when the body is cut short
        raise SourceUnavailableError(f"download failed: {url}: {exc}") from exc
    except OSError as exc:
        if is_no_space(exc):
            raise NoSpaceError(
                f"no space left in the temporary folder {workdir} while downloading {url} "
                f"({done} bytes written{f' of {total}' if total else ''}): give the exporter a larger "
                "temporary folder (TMPDIR; in the export Job, ephemeral storage for /tmp)"
            ) from exc
        raise SourceError(f"cannot write the download of {url} to {workdir}: {exc.strerror or exc}") from exc
    log.info("downloaded %s (%d bytes)", url, done)
    return Path(name), digest.hexdigest()
