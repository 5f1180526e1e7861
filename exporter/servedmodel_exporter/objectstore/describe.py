"""``list`` and ``inspect`` for versions in a bucket: read from the commit markers (which carry the
manifest and signatures), so describing a version downloads one small object, never the model."""

from __future__ import annotations

import re
from typing import Any

from ..errors import UsageError
from .layout import Marker
from .publisher import S3Publisher
from .url import S3Location


def describe_marker(publisher: S3Publisher, marker: Marker) -> dict[str, Any]:
    found = marker.manifest
    return {
        "version": marker.version,
        "path": publisher.url_of(marker.version),
        "manifest": found,
        "signatures": (found or {}).get("signatures"),
        "committed_utc": marker.committed_utc,
        "objects": len(marker.objects),
        "bytes": marker.total_size,
    }


def list_versions(location: S3Location, model: str) -> dict[str, Any]:
    """Complete versions described, plus the numbers that are only claimed or partly uploaded."""
    publisher = S3Publisher(location, model)
    publisher.check_bucket()
    listing = publisher.listing()
    entries = []
    for version in listing.complete:
        marker = publisher.marker(version)
        if marker is not None:
            entries.append(describe_marker(publisher, marker))
    incomplete = sorted((set(listing.uncommitted) | set(listing.claims)) - set(listing.complete))
    return {"versions": entries, "incomplete": incomplete}


def inspect_url(location: S3Location) -> list[dict[str, Any]]:
    """``s3://bucket/prefix/<model>/<N>`` (one version) or ``s3://bucket/prefix/<model>`` (every version)."""
    if not location.prefix:
        raise UsageError(f"{location.url} names no model: use s3://BUCKET/PREFIX/MODEL[/VERSION]")
    parent, _, last = location.prefix.rpartition("/")
    if re.fullmatch(r"\d+", last) and parent:
        model_parent, _, model = parent.rpartition("/")
        publisher = S3Publisher(_with_prefix(location, model_parent), model)
        publisher.check_bucket()
        marker = publisher.marker(int(last))
        if marker is None:
            raise UsageError(
                f"version {last} of {model} has no commit marker in {location.url}: it does not exist, "
                "or its upload is in progress or was interrupted (such versions are never served)"
            )
        return [describe_marker(publisher, marker)]
    model_parent, _, model = location.prefix.rpartition("/")
    return list_versions(_with_prefix(location, model_parent), model)["versions"]


def _with_prefix(location: S3Location, prefix: str) -> S3Location:
    return S3Location(location.bucket, prefix, location.endpoint_url, location.region)
