"""Where a model's versions live in a bucket, and when a version is complete.

Objects of version N of model M live under ``<prefix>/<M>/<N>/<relative path>``, exactly as the files of
``<base>/<M>/<N>/`` on a volume. Object stores have no rename, so completeness is a separate object: the
commit marker ``<prefix>/<M>/<N>.commit.json``, written LAST and only if absent (``If-None-Match: *``). It
lists every object of the version with its size and sha256, plus the servedmodel manifest. Readers (the
sync sidecar, ``list``, ``inspect``) take a version only if its marker exists and the objects match it;
objects without a marker are an unfinished or killed upload and are never served.

Version numbers are claimed before any upload by creating ``<prefix>/<M>/.claims/<N>`` only if absent: the
store answers 412 to the loser, so two publishers never take the same number. A store that ignores
``If-None-Match`` (``conditional_writes_supported`` probes once) is served by a lock object
``<prefix>/<M>/.lock`` with an owner and an expiry instead (best effort: see ``publisher``).

Names starting with "." (``.claims/``, ``.lock``) are no version numbers, so nothing reading the layout
mistakes them for versions.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from .client import error_code, http_status

MARKER_SUFFIX = ".commit.json"
CLAIMS_FOLDER = ".claims"
LOCK_NAME = ".lock"
MARKER_KIND = "servedmodel.io/commit-marker"
MARKER_SCHEMA = 1
_MARKER_RE = re.compile(r"(\d+)" + re.escape(MARKER_SUFFIX))
_VERSION_RE = re.compile(r"\d+")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_INT64_MAX = 2**63 - 1


class MarkerError(ValueError):
    """A commit marker that is not what a publisher writes (truncated, hand-edited, another tool's)."""


def check_model_name(model: str) -> str:
    """A model is one key segment that does not start with "." (as a folder on a volume)."""
    if not model or "/" in model or model.startswith(".") or model.strip() != model:
        raise UsageError(f"invalid model name {model!r}: use one path segment that does not start with '.'")
    return model


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def model_prefix(prefix: str, model: str) -> str:
    """``<prefix>/<M>/``: everything of model M (with the trailing slash, for listing)."""
    return _join(prefix, check_model_name(model)) + "/"


def version_prefix(prefix: str, model: str, version: int) -> str:
    """``<prefix>/<M>/<N>/``: the objects of version N (with the trailing slash)."""
    return _join(prefix, check_model_name(model), str(_check_version(version))) + "/"


def object_key(prefix: str, model: str, version: int, relative_path: str) -> str:
    """The key of one file of version N, ``relative_path`` as below the version folder on a volume."""
    return version_prefix(prefix, model, version) + check_relative_path(relative_path)


def marker_key(prefix: str, model: str, version: int) -> str:
    """``<prefix>/<M>/<N>.commit.json``: the commit marker, whose existence makes version N complete."""
    return _join(prefix, check_model_name(model), f"{_check_version(version)}{MARKER_SUFFIX}")


def claim_key(prefix: str, model: str, version: int) -> str:
    """``<prefix>/<M>/.claims/<N>``: created (if absent) by the one publisher that takes number N."""
    return _join(prefix, check_model_name(model), CLAIMS_FOLDER, str(_check_version(version)))


def lock_key(prefix: str, model: str) -> str:
    """``<prefix>/<M>/.lock``: the lock object, for stores without conditional writes only."""
    return _join(prefix, check_model_name(model), LOCK_NAME)


def _check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= _INT64_MAX:
        raise UsageError(f"invalid version {version!r}: a non-negative 64-bit integer")
    return version


def check_relative_path(path: str) -> str:
    """A path below a version folder: relative, "/"-separated, no "." or ".." segments."""
    segments = path.split("/")
    if not path or path.startswith("/") or any(s in ("", ".", "..") for s in segments):
        raise MarkerError(f"invalid object path {path!r}: relative, with no empty, '.' or '..' segments")
    return path


# -- the commit marker -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectEntry:
    """One object of a version: its path below ``<prefix>/<M>/<N>/``, size in bytes and sha256 (hex)."""

    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Marker:
    """What ``<N>.commit.json`` says: the complete list of a version's objects and its manifest."""

    model: str
    version: int
    objects: tuple[ObjectEntry, ...]
    manifest: dict[str, Any] | None = None
    committed_utc: str = field(
        default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    )
    publisher: str = ""

    @property
    def total_size(self) -> int:
        return sum(o.size for o in self.objects)

    def to_json(self) -> bytes:
        body = {
            "kind": MARKER_KIND,
            "schema": MARKER_SCHEMA,
            "model": self.model,
            "version": self.version,
            "committed_utc": self.committed_utc,
            "publisher": self.publisher,
            "total_size": self.total_size,
            "objects": [o.to_dict() for o in sorted(self.objects, key=lambda o: o.path)],
            "manifest": self.manifest,
        }
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes | str, model: str | None = None, version: int | None = None) -> Marker:
        """Parse and check a marker; with ``model``/``version``, also that it belongs where it was found."""
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise MarkerError(f"commit marker is not JSON: {exc}") from exc
        if not isinstance(body, dict) or body.get("kind") != MARKER_KIND:
            raise MarkerError(f"not a commit marker (kind is not {MARKER_KIND!r})")
        if body.get("schema") != MARKER_SCHEMA:
            raise MarkerError(
                f"commit marker schema {body.get('schema')!r} is not {MARKER_SCHEMA}: "
                "written by a newer exporter? upgrade this one"
            )
        if not isinstance(body.get("model"), str) or not isinstance(body.get("version"), int):
            raise MarkerError("commit marker lacks its model name or version")
        if model is not None and body["model"] != model:
            raise MarkerError(f"commit marker names model {body['model']!r}, found under {model!r}")
        if version is not None and body["version"] != version:
            raise MarkerError(f"commit marker names version {body['version']}, found as version {version}")
        raw_objects = body.get("objects")
        if not isinstance(raw_objects, list) or not raw_objects:
            raise MarkerError("commit marker lists no objects")
        objects = []
        for raw in raw_objects:
            if not isinstance(raw, dict):
                raise MarkerError(f"commit marker object entry is not a mapping: {raw!r}")
            path, size, sha = raw.get("path"), raw.get("size"), raw.get("sha256")
            if not isinstance(path, str):
                raise MarkerError(f"commit marker object entry without a path: {raw!r}")
            check_relative_path(path)
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise MarkerError(f"commit marker gives {path!r} an invalid size {size!r}")
            if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha):
                raise MarkerError(f"commit marker gives {path!r} an invalid sha256 {sha!r}")
            objects.append(ObjectEntry(path, size, sha))
        if len({o.path for o in objects}) != len(objects):
            raise MarkerError("commit marker lists an object twice")
        manifest = body.get("manifest")
        if manifest is not None and not isinstance(manifest, dict):
            raise MarkerError("commit marker manifest is not a mapping")
        return cls(
            model=body["model"],
            version=body["version"],
            objects=tuple(objects),
            manifest=manifest,
            committed_utc=str(body.get("committed_utc", "")),
            publisher=str(body.get("publisher", "")),
        )


# -- reading a bucket ---------------------------------------------------------------------------------


def _list(client, bucket: str, prefix: str, delimiter: str | None = "/") -> Iterator[dict[str, Any]]:
    """Pages of ListObjectsV2 below ``prefix``."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        kwargs["Delimiter"] = delimiter
    yield from client.get_paginator("list_objects_v2").paginate(**kwargs)


@dataclass
class ModelListing:
    """What a bucket holds for one model: committed versions (marker present), versions with objects but
    no marker (an upload in progress, or killed), and claims (number -> time the claim was made)."""

    complete: list[int] = field(default_factory=list)
    uncommitted: list[int] = field(default_factory=list)
    claims: dict[int, dt.datetime] = field(default_factory=dict)

    @property
    def taken(self) -> set[int]:
        """Every number in use in any way: a new version must not take one of these."""
        return set(self.complete) | set(self.uncommitted) | set(self.claims)


def model_listing(client, bucket: str, prefix: str, model: str) -> ModelListing:
    """One listing of ``<prefix>/<M>/`` (by folder, not every object) plus the claims folder."""
    root = model_prefix(prefix, model)
    complete, folders = set(), set()
    for page in _list(client, bucket, root):
        for obj in page.get("Contents", []):
            match = _MARKER_RE.fullmatch(obj["Key"][len(root) :])
            if match:
                complete.add(int(match.group(1)))
        for sub in page.get("CommonPrefixes", []):
            name = sub["Prefix"][len(root) :].rstrip("/")
            if _VERSION_RE.fullmatch(name):
                folders.add(int(name))
    claims = {}
    claims_root = root + CLAIMS_FOLDER + "/"
    for page in _list(client, bucket, claims_root):
        for obj in page.get("Contents", []):
            name = obj["Key"][len(claims_root) :]
            if _VERSION_RE.fullmatch(name):
                claims[int(name)] = obj["LastModified"]
    # Stores backed by a file system (SeaweedFS's filer) may list a folder whose objects were all deleted
    # for a while: an uncommitted version is one with at least one object.
    uncommitted = [
        v
        for v in sorted(folders - complete)
        if client.list_objects_v2(Bucket=bucket, Prefix=f"{root}{v}/", MaxKeys=1).get("KeyCount", 0) > 0
    ]
    return ModelListing(sorted(complete), uncommitted, claims)


def complete_versions(client, bucket: str, prefix: str, model: str) -> list[int]:
    """Versions of ``model`` whose commit marker exists, ascending: the only ones anything may serve."""
    return model_listing(client, bucket, prefix, model).complete


def list_models(client, bucket: str, prefix: str) -> list[str]:
    """Model names below ``prefix`` (every "folder" whose name does not start with ".")."""
    root = prefix.strip("/") + "/" if prefix.strip("/") else ""
    names = []
    for page in _list(client, bucket, root):
        for sub in page.get("CommonPrefixes", []):
            name = sub["Prefix"][len(root) :].rstrip("/")
            if name and not name.startswith("."):
                names.append(name)
    return sorted(names)


def read_marker(client, bucket: str, prefix: str, model: str, version: int) -> Marker | None:
    """The commit marker of version N, or None if it has none (not complete, or no such version).
    Raises ``MarkerError`` if the marker exists but is not valid."""
    try:
        body = client.get_object(Bucket=bucket, Key=marker_key(prefix, model, version))["Body"].read()
    except Exception as exc:
        if error_code(exc) in ("NoSuchKey", "404") or http_status(exc) == 404:
            return None
        raise
    return Marker.from_json(body, model=model, version=version)


# -- conditional writes -------------------------------------------------------------------------------


def put_if_absent(client, bucket: str, key: str, body: bytes, content_type: str = "application/json") -> bool:
    """Create ``key`` only if no object has that key (``If-None-Match: *``): True if this call created
    it, False if it existed (412, or 409 from stores that report a concurrent create as a conflict)."""
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*")
    except Exception as exc:
        if http_status(exc) in (409, 412) or error_code(exc) in (
            "PreconditionFailed",
            "412",
            "ConditionalRequestConflict",
        ):
            return False
        raise
    return True


def conditional_writes_supported(client, bucket: str, prefix: str) -> bool:
    """Probe once whether the store honours ``If-None-Match: *``: create an object twice, conditionally;
    the second create must be refused. The probe object is removed again."""
    key = _join(prefix, f".servedmodel-probe-{uuid.uuid4().hex}")
    try:
        first = put_if_absent(client, bucket, key, b"probe", "text/plain")
        second = put_if_absent(client, bucket, key, b"probe", "text/plain")
    finally:
        try:
            client.delete_object(Bucket=bucket, Key=key)
        except Exception:  # noqa: BLE001 - a leftover probe object harms nobody
            pass
    return first and not second
