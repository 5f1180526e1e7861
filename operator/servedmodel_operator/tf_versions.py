"""Which TensorFlow release a model server runs, and whether an exported version is newer than it.

A SavedModel written by a newer TensorFlow than the server's may use ops the server does not have ("Op
type not registered"). TF Serving releases carry TensorFlow's version numbers, so the server's release is
known from `spec.serverVersion` when the user declares it, or from the tag of an official
`tensorflow/serving:X.Y.Z[-gpu]` image (the defaults are such images); otherwise it is unknown and nothing
is said.
"""

from __future__ import annotations

import re

from .spec import ServedModelSpec

_OFFICIAL_TAG = re.compile(r"^(?:.*/)?tensorflow/serving:(\d+\.\d+(?:\.\d+)?)(?:-gpu)?$")
_RELEASE = re.compile(r"^(\d+)\.(\d+)")


def server_release(spec: ServedModelSpec) -> str | None:
    """The TensorFlow (Serving) release the model server runs, when it can be known."""
    if spec.server_version:
        return spec.server_version
    match = _OFFICIAL_TAG.match(spec.image)
    return match.group(1) if match else None


def _minor(release: str) -> tuple[int, int] | None:
    match = _RELEASE.match(release)
    return (int(match.group(1)), int(match.group(2))) if match else None


def newer_tensorflow_warning(
    exported_by: str | None, spec: ServedModelSpec, version: int | None
) -> str | None:
    """A message when `exported_by` (the exporter's TensorFlow) is a newer minor release than the server's."""
    server = server_release(spec)
    if not exported_by or not server:
        return None
    ours, theirs = _minor(exported_by), _minor(server)
    if ours is None or theirs is None or ours <= theirs:
        return None
    what = f"version {version}" if version is not None else "the exported version"
    return (
        f"{what} was exported by TensorFlow {exported_by}, newer than the model server's {server}: it may "
        f'fail to load ("Op type not registered"). Serve it with TensorFlow Serving {ours[0]}.{ours[1]} or '
        "newer (spec.image, with spec.serverVersion when its tag does not say the release), or export with "
        f"an exporter image whose TensorFlow is at most {theirs[0]}.{theirs[1]} (spec.export.image)."
    )
