"""A watched namespace that is being deleted stays watched until it is gone, so that the deletions of its
ServedModels and children reach the operator's caches.

kopf stops watching a namespace once it is marked for deletion and has status conditions none of which
blocks it, which is how a namespace's termination starts: before the namespace controller has deleted its
content. The ServedModels deleted with the namespace then never give a DELETED event: they stay in kopf's
indexes (the operator's caches) for good, and every resync reconciled them again, each child apply refused
because the namespace was gone. This narrows kopf's test to the namespace's own DELETED event. A namespace
is removed only after its content, so the content's deletions come first. When a watch gap hides the
namespace's DELETED event, relist.py supplies it after the relist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kopf._core.reactor import observation


def namespace_deleted(raw_event: Mapping[str, Any]) -> bool:
    return raw_event.get("type") == "DELETED"


def install() -> None:
    """Replace kopf's test (revise_namespaces looks is_deleted up in its module at each call)."""
    observation.is_deleted = namespace_deleted
