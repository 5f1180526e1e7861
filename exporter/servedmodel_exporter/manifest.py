"""``assets.extra/servedmodel-manifest.json``: where a version came from and what it serves.

It lives inside the version folder, so it is published by the same atomic rename as the model itself, and
``list``/``inspect`` can describe versions without loading TensorFlow graphs.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:  # reading manifests must not import TensorFlow
    from .sources import Source
    from .verify import Report

ASSETS_EXTRA = "assets.extra"
MANIFEST_FILE = "servedmodel-manifest.json"
SIGNATURES_FILE = "signatures.txt"
SCHEMA = 1


def build(source: Source, signatures: dict[str, Any], report: Report, warmup_records: int) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    return {
        "schema": SCHEMA,
        "exporter_version": __version__,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"uri": source.uri, "kind": source.kind, "sha256": source.sha256},
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "signatures": signatures,
        "verification": {
            "signature": report.signature,
            "sample_inputs": report.sample_origin,
            "atol": report.atol,
            "rtol": report.rtol,
            "max_abs_diff": report.max_abs_diff,
        },
        "warmup_records": warmup_records,
    }


def write(assets_extra: Path, manifest: dict[str, Any]) -> Path:
    path = assets_extra / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def read(version_dir: Path) -> dict[str, Any] | None:
    """The manifest of a published version, or None if it has none (e.g. published by another tool)."""
    try:
        return json.loads((version_dir / ASSETS_EXTRA / MANIFEST_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
