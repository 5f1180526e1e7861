"""Atomic, serialized publication of version folders under ``<base>/<model>/``.

TF Serving loads any all-digit child of the model folder as soon as it sees it and never checks that it is
complete, so a version must appear in one step: it is built in a ``.staging-<pid>-<random>`` folder (a name TF
Serving ignores), fsynced, then renamed to its number with a rename that refuses to replace anything.
Publishers of the same model serialize on ``flock(<base>/<model>/.lock)``; each staging folder has a sibling
``.owner`` file its publisher keeps flocked, so a later run can tell crash leftovers (lock free) from live
work (lock held), even across containers whose pids mean nothing to each other.

The lock is an optimisation and a guard for cleaning, not what keeps version numbers unique: that is the
no-replace rename, which holds even where ``flock`` is not shared between machines (NFS mounted with local
locks). A publisher that loses the rename race picks the next number (``auto``) or says the version appeared.
Published folders are made readable by everyone (files 0644, folders 0755) whatever the exporter's umask, so
a model server running under another user can load them.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import manifest
from .checkpoints import PRUNING, RENAMED, checkpoint
from .errors import PublishError, UsageError, VersionExistsError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
# Testing hook: take the model lock in this folder instead, the way each node of an NFS volume mounted with
# local locks has its own, so tests can run publishers whose locks do not exclude each other.
LOCK_DIR_ENV = "SERVEDMODEL_EXPORTER_TEST_LOCK_DIR"
FILE_MODE, DIR_MODE = 0o644, 0o755
STAGING_PREFIX = ".staging-"
DELETING_PREFIX = ".deleting-"
OWNER_SUFFIX = ".owner"

_INT64_MAX = 2**63 - 1
# TF Serving's safe_strto64: optional surrounding whitespace, optional minus, digits.
_VERSION_RE = re.compile(r"\s*(-?\d+)\s*")
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def parse_version(name: str) -> int | None:
    """The version TF Serving reads from a folder name, or None if it ignores the folder."""
    match = _VERSION_RE.fullmatch(name)
    if match is None or abs(int(match.group(1))) > _INT64_MAX:
        return None
    return int(match.group(1))


@dataclass
class Staging:
    """A private folder being filled; ``owner_fd`` holds the flock that marks it as alive."""

    path: Path
    owner_path: Path
    owner_fd: int = field(repr=False)

    def release(self) -> None:
        """Drop the liveness lock (idempotent); the folder is gone (renamed) or removed by ``discard``."""
        if self.owner_fd >= 0:
            _unlink_missing_ok(self.owner_path)
            os.close(self.owner_fd)
            self.owner_fd = -1

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.release()


class ModelDir:
    """The folder TF Serving polls for one model (its ``base_path``)."""

    def __init__(self, base_path: Path, model: str) -> None:
        if not model or model in (".", "..") or "/" in model or model.startswith("."):
            raise UsageError(
                f"invalid model name {model!r}: use one folder name that does not start with '.'"
            )
        self.root = Path(base_path) / model

    def ensure(self) -> None:
        """Create the model folder (and missing parents) readable and searchable by everyone."""
        self._refuse_symlink()
        missing = [p for p in (self.root, *self.root.parents) if not p.exists()]
        try:
            for path in reversed(missing):
                path.mkdir(exist_ok=True)
                os.chmod(path, DIR_MODE)  # not the umask's: the model server runs as another user
        except OSError as exc:
            raise PublishError(f"cannot create {self.root}: {exc.strerror or exc}") from exc
        self._refuse_symlink()

    def _refuse_symlink(self) -> None:
        """Everything is written below <base>/<model>: a symlink there would put it anywhere."""
        if self.root.is_symlink():
            raise PublishError(f"{self.root} is a symlink; refusing to publish outside the base path")

    def versions(self) -> dict[int, Path]:
        """Published versions by number, as TF Serving would see them."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise PublishError(f"cannot list {self.root}: {exc.strerror or exc}") from exc
        found = {}
        for entry in entries:
            version = parse_version(entry.name)
            if version is not None and entry.is_dir():
                found[version] = Path(entry.path)
        return found

    def published_from(self, sha256: str, version: int | None = None) -> int | None:
        """The highest version (or just ``version``) whose manifest names a source with this sha256."""
        candidates = self.versions()
        if version is not None:
            candidates = {version: candidates[version]} if version in candidates else {}
        for number, path in sorted(candidates.items(), reverse=True):
            if _recorded_sha256(path) == sha256:
                return number
        return None

    def source_sha256(self, version: int) -> str | None:
        """The source sha256 the manifest of ``version`` records (None: no such version, or no manifest)."""
        path = self.versions().get(version)
        return _recorded_sha256(path) if path is not None else None

    def check_free(self, version: int) -> None:
        if version in self.versions():
            raise VersionExistsError(
                f"version {version} of {self.root.name} already exists in {self.root}; published versions "
                "are immutable: use --version auto or a higher number"
            )

    @contextmanager
    def lock(self) -> Iterator[None]:
        lock_dir = os.environ.get(LOCK_DIR_ENV)
        path = Path(lock_dir) / f"{self.root.name}{LOCK_NAME}" if lock_dir else self.root / LOCK_NAME
        try:
            # O_NOFOLLOW: a planted .lock symlink must not make us create a file elsewhere.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise PublishError(f"cannot open lock file in {self.root}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def new_staging(self) -> Staging:
        """Create a staging folder; call under ``lock()`` so cleaners never see it without its owner lock."""
        name = f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        owner_path = self.root / (name + OWNER_SUFFIX)
        try:
            owner_fd = os.open(owner_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            fcntl.flock(owner_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            (self.root / name).mkdir()
        except OSError as exc:
            raise PublishError(
                f"cannot create a staging folder in {self.root}: {exc.strerror or exc}"
            ) from exc
        return Staging(self.root / name, owner_path, owner_fd)

    def clean_leftovers(self) -> list[str]:
        """Remove what crashed runs left (dead staging, half-deleted versions); call under ``lock()``."""
        removed = []
        for entry in os.scandir(self.root):
            name = entry.name
            if name.startswith(DELETING_PREFIX) or (
                name.startswith(STAGING_PREFIX) and not self._alive(name)
            ):
                _remove(Path(entry.path))
                removed.append(name)
        if removed:
            log.info("removed leftovers of interrupted runs in %s: %s", self.root, ", ".join(sorted(removed)))
        return removed

    def commit(self, staging: Staging, version: int) -> Path:
        """Rename the fsynced staging folder to ``version``; call under ``lock()`` after ``check_free``."""
        target = self.root / str(version)
        try:
            _rename_noreplace(staging.path, target)
            _fsync_dir(self.root)
        except FileExistsError as exc:
            raise VersionExistsError(
                f"{target} appeared while publishing (another exporter renamed its version there first); "
                "published versions are immutable"
            ) from exc
        except OSError as exc:
            raise PublishError(f"cannot rename {staging.path} to {target}: {exc.strerror or exc}") from exc
        checkpoint(RENAMED)
        staging.release()
        return target

    def prune(self, keep: int, pins: Iterable[int], protect: int) -> list[int]:
        """Keep the ``keep`` highest versions plus pinned ones and ``protect``; call under ``lock()``.

        Each victim is first renamed to a non-numeric name, so TF Serving never sees a half-deleted version.
        """
        spared = set(pins) | {protect}
        ranked = sorted(self.versions().items(), reverse=True)
        victims = [(v, path) for v, path in ranked[keep:] if v not in spared]
        for version, path in victims:
            doomed = self.root / f"{DELETING_PREFIX}{path.name}-{secrets.token_hex(4)}"
            try:
                os.rename(path, doomed)
                checkpoint(PRUNING)
                _remove(doomed)
            except OSError as exc:
                raise PublishError(f"cannot remove old version {path}: {exc.strerror or exc}") from exc
            log.info("retention: removed version %d", version)
        if victims:
            _fsync_dir(self.root)
        return sorted(v for v, _ in victims)

    def _alive(self, name: str) -> bool:
        owner = name if name.endswith(OWNER_SUFFIX) else name + OWNER_SUFFIX
        try:
            fd = os.open(self.root / owner, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


def _recorded_sha256(version_dir: Path) -> str | None:
    return ((manifest.read(version_dir) or {}).get("source") or {}).get("sha256")


def make_readable(root: Path) -> None:
    """Files 0644 and folders 0755 under ``root``: readable by the model server's user, whatever our umask."""
    try:
        for folder, _, files in os.walk(root):
            os.chmod(folder, DIR_MODE)
            for name in files:
                os.chmod(os.path.join(folder, name), FILE_MODE)
    except OSError as exc:
        raise PublishError(f"cannot set permissions under {root}: {exc.strerror or exc}") from exc


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` so the rename never exposes unwritten data after a crash."""
    try:
        for folder, _, files in os.walk(root):
            for name in files:
                fd = os.open(os.path.join(folder, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            _fsync_dir(Path(folder))
    except OSError as exc:
        raise PublishError(f"cannot fsync {root}: {exc.strerror or exc}") from exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rename_noreplace(src: Path, dst: Path) -> None:
    """``renameat2(RENAME_NOREPLACE)``; where the filesystem lacks it, check-then-rename (under the lock)."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), str(dst))  # EEXIST becomes FileExistsError
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    try:
        os.rename(src, dst)  # a folder never replaces a non-empty folder (nor a file): still no-replace
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst)) from exc
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        _unlink_missing_ok(path)


def _unlink_missing_ok(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
