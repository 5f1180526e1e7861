"""A reproducible OCI image, written as an OCI image layout folder (``oci-layout``, ``index.json``, blobs).

Reproducible means the same inputs give the same bytes, hence the same digest: tar entries sorted, owner
root (0:0, no names), fixed modes (0644 files, 0755 folders and executables), mtime 0, PAX headers only
where a name needs them, gzip without a name or a time. Layers are written to disk while their two
digests (compressed, for the manifest; uncompressed, the config's ``diff_ids``) are computed in one pass,
so a model of any size never sits in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import PublishError

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
EPOCH = "1970-01-01T00:00:00Z"
FILE_MODE, DIR_MODE, EXEC_MODE = 0o644, 0o755, 0o755
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One tar entry: a folder (``source`` and ``data`` None), a file copied from ``source``, or bytes."""

    name: str  # relative, '/'-separated, no leading '/'
    source: Path | None = None
    data: bytes | None = None
    executable: bool = False

    @property
    def is_dir(self) -> bool:
        return self.source is None and self.data is None


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out


@dataclass(frozen=True)
class Image:
    """An image in an OCI layout folder: its manifest's descriptor and every blob it references."""

    layout: Path
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]

    def blob_path(self, digest: str) -> Path:
        return blob_path(self.layout, digest)

    @property
    def size(self) -> int:
        """Bytes a registry stores for the image (compressed layers, config and manifest)."""
        return self.manifest.size + self.config.size + sum(layer.size for layer in self.layers)


def blob_path(layout: Path, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    return layout / "blobs" / algorithm / hexdigest


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``target``."""

    def __init__(self, target: BinaryIO) -> None:
        self.target, self.hash, self.size = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self.size += len(view)
        self.target.write(view)
        return len(view)


def _tarinfo(entry: Entry, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.name + ("/" if entry.is_dir else ""))
    info.type = tarfile.DIRTYPE if entry.is_dir else tarfile.REGTYPE
    info.mode = DIR_MODE if entry.is_dir else (EXEC_MODE if entry.executable else FILE_MODE)
    info.size = 0 if entry.is_dir else size
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def _check_source(path: Path) -> int:
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise PublishError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise PublishError(f"{path} is not a regular file (symlinks and devices are not put into images)")
    return st.st_size


class Writer:
    """Writes blobs into an OCI layout folder and the image's config, manifest and index at the end."""

    def __init__(self, layout: Path) -> None:
        self.layout = Path(layout)
        (self.layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        self.layers: list[Descriptor] = []
        self.diff_ids: list[str] = []
        self.history: list[dict[str, Any]] = []

    def add_blob(self, data: bytes, media_type: str, annotations: dict[str, str] | None = None) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = blob_path(self.layout, digest)
        if not path.exists():
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return Descriptor(media_type, digest, len(data), annotations or {})

    def add_layer(self, entries: Iterable[Entry], created_by: str, annotations: dict[str, str] | None = None):
        """A gzip tar layer of ``entries`` (sorted by name here; folders are listed by the caller)."""
        ordered = sorted(entries, key=lambda e: e.name)
        names = [e.name for e in ordered]
        if len(set(names)) != len(names):
            raise PublishError(
                f"a layer lists a path twice: {sorted({n for n in names if names.count(n) > 1})}"
            )
        tmp = self.layout / "blobs" / "sha256" / f".layer-{os.getpid()}-{len(self.layers)}.tmp"
        with open(tmp, "wb") as raw:
            compressed = _Hashing(raw)
            with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
                plain = _Hashing(gz)  # type: ignore[arg-type]
                with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    for entry in ordered:
                        if entry.is_dir:
                            tar.addfile(_tarinfo(entry, 0))
                        elif entry.data is not None:
                            tar.addfile(_tarinfo(entry, len(entry.data)), io.BytesIO(entry.data))
                        else:
                            assert entry.source is not None
                            size = _check_source(entry.source)
                            with open(entry.source, "rb") as src:
                                tar.addfile(_tarinfo(entry, size), src)
        digest = "sha256:" + compressed.hash.hexdigest()
        os.replace(tmp, blob_path(self.layout, digest))
        descriptor = Descriptor(LAYER_TYPE, digest, compressed.size, annotations or {})
        self.layers.append(descriptor)
        self.diff_ids.append("sha256:" + plain.hash.hexdigest())
        self.history.append({"created": EPOCH, "created_by": created_by})
        return descriptor

    def finish(
        self,
        *,
        architecture: str,
        container_config: dict[str, Any],
        annotations: dict[str, str],
        ref_name: str | None = None,
    ) -> Image:
        config = {
            "architecture": architecture,
            "os": "linux",
            "created": EPOCH,
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": list(self.diff_ids)},
            "history": list(self.history),
        }
        config_desc = self.add_blob(canonical_json(config), CONFIG_TYPE)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": config_desc.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
            "annotations": dict(sorted(annotations.items())),
        }
        manifest_desc = self.add_blob(canonical_json(manifest), MANIFEST_TYPE)
        index_entry = manifest_desc.to_json()
        index_entry["platform"] = {"architecture": architecture, "os": "linux"}
        if ref_name:
            index_entry["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
        index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [index_entry]}
        (self.layout / "index.json").write_bytes(canonical_json(index))
        (self.layout / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        return Image(self.layout, manifest_desc, config_desc, tuple(self.layers))


def tree_entries(root: Path, prefix: str) -> list[Entry]:
    """Every folder and regular file under ``root``, named ``<prefix>/<relative path>``, folders included
    (so each layer also carries the folders above its files, with the same fixed modes)."""
    if not root.is_dir():
        raise PublishError(f"{root} is not a folder")
    entries = [Entry(prefix)]
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(folder, root)
        base = prefix if rel == "." else f"{prefix}/{Path(rel).as_posix()}"
        for name in dirs:
            if os.path.islink(os.path.join(folder, name)):
                raise PublishError(
                    f"{os.path.join(folder, name)} is a symlink; model folders must not have any"
                )
            entries.append(Entry(f"{base}/{name}"))
        for name in sorted(files):
            entries.append(Entry(f"{base}/{name}", source=Path(folder) / name))
    return entries


def parents(path: str) -> list[Entry]:
    """Folder entries for every ancestor of ``path`` ('a/b/c' -> 'a', 'a/b')."""
    parts = path.split("/")
    return [Entry("/".join(parts[:i])) for i in range(1, len(parts))]
