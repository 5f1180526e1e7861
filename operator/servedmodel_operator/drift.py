"""Does a live child still say what we rendered? Decides whether an apply is needed at all.

The comparison is a subset check: every field we render must be present with the same value; fields
the API server defaults, and fields other actors add (a user's extra label, another controller's
annotation), are left alone. Fields we stop rendering are caught by the spec-hash annotation, which
every rendered object carries and which changes with any change to the rendered object.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal, InvalidOperation
from typing import Any

_QUANTITY_KEYS = frozenset({"limits", "requests"})


def _quantity(value: Any) -> Decimal | None:
    try:
        from kubernetes.utils import parse_quantity

        return parse_quantity(value)
    except (ValueError, InvalidOperation, TypeError):
        return None


def _empty(value: Any) -> bool:
    # The API server omits empty maps and lists and false booleans (omitempty), so they match absence.
    return value in (None, False, "", {}, [])


def _same(desired: Any, live: Any, in_quantities: bool) -> bool:
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return _empty(desired) and _empty(live)
        return all(
            _same(v, live[k], in_quantities or k in _QUANTITY_KEYS) if k in live else _empty(v)
            for k, v in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(live, list):
            return _empty(desired) and _empty(live)
        if desired and all(isinstance(d, dict) and "name" in d for d in desired):
            # Merged by name, as server-side apply merges containers, volumes and env: others' entries
            # (an injected sidecar) are theirs, and ours must each be there and unchanged.
            by_name = {item.get("name"): item for item in live if isinstance(item, dict)}
            return all(d["name"] in by_name and _same(d, by_name[d["name"]], False) for d in desired)
        if len(desired) != len(live):
            return _empty(desired) and _empty(live)
        return all(_same(d, lv, False) for d, lv in zip(desired, live, strict=True))
    if desired == live:
        return True
    if in_quantities:  # "1000m" and "1" are the same CPU; the API server may canonicalise either way
        a, b = _quantity(desired), _quantity(live)
        return a is not None and a == b
    return False


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """True when the live object is missing or differs from the rendered one in a field we set."""
    if live is None:
        return True
    if live.get("metadata", {}).get("deletionTimestamp"):
        return True
    for section, value in desired.items():
        if section in ("apiVersion", "kind"):
            continue
        if section == "metadata":
            live_meta = live.get("metadata") or {}
            for key in ("labels", "annotations", "ownerReferences"):
                if key in value and not _same(value[key], live_meta.get(key), False):
                    return True
            continue
        if not _same(value, live.get(section), False):
            return True
    return False


def _project(desired: Any, live: Any) -> Any:
    """The part of `live` that `desired` speaks about (same shape as the comparison above)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return live
        return {k: _project(v, live.get(k)) for k, v in desired.items()}
    if isinstance(desired, list) and isinstance(live, list):
        if desired and all(isinstance(d, dict) and "name" in d for d in desired):
            by_name = {item.get("name"): item for item in live if isinstance(item, dict)}
            return [_project(d, by_name.get(d["name"])) for d in desired]
        return [_project(d, lv) for d, lv in zip(desired, live, strict=False)] + [len(live)]
    return live


def fingerprint(desired: dict[str, Any], live: dict[str, Any]) -> str:
    """A hash of what `live` holds in the fields `desired` sets (labels, annotations and owner references of
    its metadata; everything it renders elsewhere). Status and fields others own do not change it, so it
    tells "still what the API server made of our apply" from "edited since"."""
    meta = desired.get("metadata") or {}
    wanted = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind", "metadata")}
    wanted["metadata"] = {k: meta[k] for k in ("labels", "annotations", "ownerReferences") if k in meta}
    view = _project(wanted, live)
    return hashlib.sha256(json.dumps(view, sort_keys=True, default=str).encode()).hexdigest()[:16]
