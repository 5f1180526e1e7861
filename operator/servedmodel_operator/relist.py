"""Deletions that happened during a watch gap, which kopf's relist would otherwise never report.

When a watch cannot resume (410 Gone: its resourceVersion is too old, after an API server restart or a long
disconnect), kopf lists the resource again and goes on watching. The listing only says what exists now: an
object deleted during the gap gets no DELETED event, so kopf's indexes (the operator's caches) keep it, and a
child deleted during the gap would never be recreated. This wraps kopf's watch stream: it remembers the
objects each stream knows (their identity, labels and owners: small), and after a relist it emits a DELETED
event for every one the listing no longer has, as client-go's informers do (DeletedFinalStateUnknown).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from kopf._cogs.clients import watching

log = logging.getLogger(__name__)

_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "ownerReferences")


def _identity(obj: dict[str, Any]) -> dict[str, Any]:
    """What a DELETED event needs: enough for kopf to forget the object and for handlers to find its owner."""
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: meta[k] for k in _KEPT_METADATA if k in meta},
    }


class RelistTracker:
    """Per watch stream (resource, namespace): the objects it holds, and the deletions a relist implies."""

    def __init__(self) -> None:
        self._known: dict[tuple[Any, Any], dict[str, dict[str, Any]]] = {}

    def wrap(self, original: Any) -> Any:
        async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
            key = (kwargs.get("resource"), kwargs.get("namespace"))
            previous = self._known.get(key)
            current: dict[str, dict[str, Any]] = {}
            async for item in original(**kwargs):
                if item is watching.Bookmark.LISTED:
                    for event in self.vanished(previous, current):
                        yield event
                    # Only a complete listing replaces what was known (one cut short says nothing).
                    self._known[key] = current
                elif isinstance(item, dict):
                    self.observe(current, item)
                yield item

        return continuous_watch

    @staticmethod
    def observe(current: dict[str, dict[str, Any]], event: dict[str, Any]) -> None:
        obj = event.get("object") or {}
        uid = (obj.get("metadata") or {}).get("uid")
        if not uid:
            return  # a BOOKMARK or an ERROR
        if event.get("type") == "DELETED":
            current.pop(uid, None)
        else:
            current[uid] = _identity(obj)

    @staticmethod
    def vanished(
        previous: dict[str, dict[str, Any]] | None, current: dict[str, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """DELETED events for what the previous stream knew and the new listing does not have."""
        if not previous:
            return []
        gone = [obj for uid, obj in previous.items() if uid not in current]
        for obj in gone:
            meta = obj["metadata"]
            log.info(
                "relisted: %s %s/%s was deleted during the watch gap",
                obj.get("kind"),
                meta.get("namespace"),
                meta.get("name"),
            )
        return [{"type": "DELETED", "object": obj} for obj in gone]


def install() -> None:
    """Wrap kopf's watch stream once (infinite_watch looks continuous_watch up in its module)."""
    if getattr(watching.continuous_watch, "_servedmodel_relist", False):
        return
    wrapped = RelistTracker().wrap(watching.continuous_watch)
    wrapped._servedmodel_relist = True  # type: ignore[attr-defined]
    watching.continuous_watch = wrapped
