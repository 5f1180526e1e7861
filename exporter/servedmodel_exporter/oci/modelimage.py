"""A model folder's versions as one OCI image: ``/models/<model>/<version>/`` and the modelcar program.

Layers: the modelcar program first (the same bytes in every model image, so registries and nodes store it
once), then one layer per version, in version order, so an image of versions 3 and 4 shares version 3's
layer with the image of version 3 alone. The exporter's manifest of each version (source sha256, TensorFlow
release, signatures) is summed up in the image's annotations and labels, where ``crane``/``skopeo inspect``
and registries' UIs show it without pulling the layers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__, manifest
from ..errors import UsageError
from ..publish import ModelDir
from . import modelcar
from .layout import Entry, Image, Writer, parents, tree_entries

MODELS_ROOT = "models"  # /models/<model>/<version>/ in the image
ANNOTATION_PREFIX = "io.servedmodel"
USER = "65532"  # the image runs as nobody-like 65532 when nothing else says (pods set their own user)


@dataclass(frozen=True)
class ModelImage:
    image: Image
    model: str
    versions: tuple[int, ...]
    model_bytes: int  # the versions' files, uncompressed: the SavedModels' size

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "versions": list(self.versions),
            "path": f"/{MODELS_ROOT}/{self.model}",
            "manifest_digest": self.image.manifest.digest,
            "image_bytes": self.image.size,
            "model_bytes": self.model_bytes,
        }


def _summary(version_dir: Path) -> dict[str, Any]:
    """What the image says about one version: where it came from and what it serves."""
    found = manifest.read(version_dir)
    if found is None:
        return {"manifest": False}
    return {
        "source_sha256": (found.get("source") or {}).get("sha256", ""),
        "created": found.get("created_utc", ""),
        "tensorflow": found.get("tensorflow_version", ""),
        "signatures": {
            name: {
                kind: {key: f"{info['dtype']}{info['shape']}" for key, info in (sig.get(kind) or {}).items()}
                for kind in ("inputs", "outputs")
            }
            for name, sig in (found.get("signatures") or {}).items()
        },
    }


def build(
    base_path: Path, model: str, layout: Path, versions: list[int] | None = None, ref_name: str | None = None
) -> ModelImage:
    """Write the image of ``<base_path>/<model>``'s versions (all of them by default) into ``layout``."""
    model_dir = ModelDir(base_path, model)
    published = model_dir.versions()
    if not published:
        raise UsageError(f"no published versions under {model_dir.root}")
    chosen = sorted(published) if versions is None else sorted(set(versions))
    missing = [v for v in chosen if v not in published]
    if missing:
        raise UsageError(
            f"version(s) {', '.join(map(str, missing))} of {model} are not published under {model_dir.root} "
            f"(published: {', '.join(map(str, sorted(published)))})"
        )
    writer = Writer(layout)
    writer.add_layer(
        [
            *parents(modelcar.PATH),
            Entry(modelcar.PATH.lstrip("/"), data=modelcar.executable(), executable=True),
            Entry(modelcar.LINK_DIR.lstrip("/")),
            Entry(MODELS_ROOT),
        ],
        "servedmodel-export: modelcar program",
    )
    summaries: dict[str, Any] = {}
    model_bytes = 0
    for version in chosen:
        folder = f"{MODELS_ROOT}/{model}/{version}"
        entries = tree_entries(published[version], folder)
        model_bytes += sum(e.source.stat().st_size for e in entries if e.source is not None)
        writer.add_layer(
            [*parents(folder), *entries],
            f"servedmodel-export: {model} version {version}",
            {f"{ANNOTATION_PREFIX}.version": str(version)},
        )
        summaries[str(version)] = _summary(published[version])
    labels = {
        f"{ANNOTATION_PREFIX}.model": model,
        f"{ANNOTATION_PREFIX}.versions": ",".join(map(str, chosen)),
        f"{ANNOTATION_PREFIX}.path": f"/{MODELS_ROOT}/{model}",
        f"{ANNOTATION_PREFIX}.manifests": json.dumps(summaries, sort_keys=True, separators=(",", ":")),
        "org.opencontainers.image.title": f"{model} {','.join(map(str, chosen))}",
        "org.opencontainers.image.description": (
            f"SavedModel versions of {model} for TensorFlow Serving, under /{MODELS_ROOT}/{model}/"
        ),
        "org.opencontainers.image.vendor": f"servedmodel-export {__version__}",
    }
    image = writer.finish(
        architecture=modelcar.ARCHITECTURE,
        container_config={
            "User": USER,
            "Entrypoint": [modelcar.PATH],
            "WorkingDir": "/",
            "Labels": labels,
        },
        annotations=labels,
        ref_name=ref_name,
    )
    return ModelImage(image, model, tuple(chosen), model_bytes)
