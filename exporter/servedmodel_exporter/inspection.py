"""Describe published versions for the ``list`` and ``inspect`` commands.

Signatures come from the manifest the exporter wrote; versions published by other tools have none, so their
``saved_model.pb`` is read instead. (Named ``inspection`` so it can never shadow the standard ``inspect``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import manifest, signatures
from .errors import UsageError, VerificationError
from .publish import ModelDir, parse_version


def describe_version(version_dir: Path) -> dict[str, Any]:
    found = manifest.read(version_dir)
    if found is not None:
        return {"path": str(version_dir), "manifest": found, "signatures": found["signatures"]}
    try:
        described = signatures.describe(version_dir)
    except VerificationError as exc:
        return {"path": str(version_dir), "manifest": None, "signatures": None, "error": str(exc)}
    return {"path": str(version_dir), "manifest": None, "signatures": described}


def list_versions(base_path: Path, model: str) -> list[dict[str, Any]]:
    model_dir = ModelDir(base_path, model)
    if not model_dir.root.is_dir():
        raise UsageError(f"no model folder at {model_dir.root}")
    return [{"version": v, **describe_version(path)} for v, path in sorted(model_dir.versions().items())]


def inspect_path(path: Path) -> list[dict[str, Any]]:
    """A version folder (has ``saved_model.pb``) or a model folder (its numeric children)."""
    if (path / "saved_model.pb").is_file():
        return [{"version": parse_version(path.name), **describe_version(path)}]
    if path.is_dir():
        return list_versions(path.parent, path.name)
    raise UsageError(f"{path} is neither a SavedModel folder nor a model folder")


def render_table(entries: list[dict[str, Any]]) -> str:
    rows = [("VERSION", "CREATED (UTC)", "SOURCE SHA256", "SIGNATURES")]
    for entry in entries:
        found = entry["manifest"] or {}
        rows.append(
            (
                str(entry["version"]),
                found.get("created_utc", "-"),
                found.get("source", {}).get("sha256", "-")[:12],
                ", ".join(entry["signatures"] or []) or entry.get("error", "-"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[3] for row in rows
    )


def render_details(entries: list[dict[str, Any]]) -> str:
    parts = []
    for entry in entries:
        found = entry["manifest"]
        header = f"version {entry['version']} at {entry['path']}"
        if found:
            header += (
                f"\n  created {found['created_utc']} by exporter {found['exporter_version']}"
                f" (TF {found['tensorflow_version']}, Keras {found['keras_version']})"
                f"\n  source {found['source']['uri']} ({found['source']['kind']},"
                f" sha256 {found['source']['sha256']})"
                f"\n  warmup records: {found['warmup_records']}"
            )
        else:
            header += "\n  no exporter manifest; signatures read from saved_model.pb"
        if "bytes" in entry:  # in object storage: what the commit marker lists
            header += (
                f"\n  committed {entry['committed_utc']}: {entry['objects']} objects, {entry['bytes']} bytes"
            )
        body = signatures.render(entry["signatures"]) if entry["signatures"] else entry.get("error", "")
        parts.append(header + "\n\n" + body)
    return "\n".join(parts)
