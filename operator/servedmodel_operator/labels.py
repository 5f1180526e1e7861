"""Moving a version label safely, the way TF Serving requires (reference 4.2).

TF Serving refuses to move an existing label to a version that is not AVAILABLE, and a refused label
refuses the whole config reload, newly asked-for versions included: moving `stable` from 3 to 4 in the
same edit that adds 4 would never load 4. So a moved label stays on its old version, which stays in a
`specific` policy, until the server reports the new version AVAILABLE; then the next reconcile moves it.
New labels may point anywhere: the server runs with --allow_version_labels_for_unavailable_models.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from .render import ANNOTATION_LABELS  # noqa: E402  (on the ConfigMap: the labels TF Serving was given)
from .spec import ServedModelSpec, VersionPolicy


def staged_labels(
    desired: dict[str, int], previous: dict[str, int] | None, available: set[int]
) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """(labels to render, held labels as name -> (current version, wanted version))."""
    labels: dict[str, int] = {}
    held: dict[str, tuple[int, int]] = {}
    for name, version in desired.items():
        old = (previous or {}).get(name)
        if old is not None and old != version and version not in available:
            labels[name], held[name] = old, (old, version)
        else:
            labels[name] = version
    return labels, held


def applied_labels(configmap: dict[str, Any] | None) -> dict[str, int] | None:
    raw = ((configmap or {}).get("metadata") or {}).get("annotations", {}).get(ANNOTATION_LABELS)
    try:
        return {str(k): int(v) for k, v in json.loads(raw).items()} if raw else None
    except (ValueError, TypeError, AttributeError):
        return None


def hold(spec: ServedModelSpec, labels: dict[str, int], held: dict[str, tuple[int, int]]) -> ServedModelSpec:
    """The spec as rendered while labels are held: the held versions stay in a `specific` policy."""
    policy = spec.version_policy
    if policy.kind == "specific":
        kept = tuple(sorted(set(policy.versions) | {old for old, _ in held.values()}))
        policy = VersionPolicy("specific", versions=kept)
    return replace(spec, version_labels=labels, version_policy=policy)


def pending_message(held: dict[str, tuple[int, int]]) -> str:
    moves = ", ".join(
        f"{name} stays on {old} until {new} is AVAILABLE" for name, (old, new) in sorted(held.items())
    )
    return f"Version labels wait for their versions to load: {moves}."
