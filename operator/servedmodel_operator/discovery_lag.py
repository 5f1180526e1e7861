"""A CRD that says Established before API discovery lists its resource: ask discovery again until it does.

kopf learns which resources exist from API discovery, asked once per event of a watched CRD. The API
server's discovery document is updated by a controller of its own, so the CRD's last event
(Established=True) can arrive before discovery lists the new resource; kopf's one question then comes too
early and, with no further CRD event, it never watches that resource. For ServiceMonitors (the Prometheus
Operator installed after ours) that meant monitors created but never seen in the operator's cache: a
monitor the spec stopped asking for was never deleted, and every reconcile wrote it again. This wraps
kopf's handling of a CRD event: while the CRD says Established and kopf still does not serve its
resource, kopf's own rescan is repeated with a growing delay, for at most MAX_WAIT seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kopf._core.reactor import observation

log = logging.getLogger(__name__)

FIRST_DELAY = 0.2
MAX_DELAY = 5.0
MAX_WAIT = 120.0


def crd_established(crd: Mapping[str, Any]) -> bool:
    """Whether a CRD's status says Established=True (the API server serves its resource, or is about to)."""
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def established_resource(raw_event: Mapping[str, Any]) -> tuple[str, str] | None:
    """(group, plural) of a CRD event's resource when the CRD is there and Established, else None."""
    crd = raw_event.get("object") or {}
    if raw_event.get("type") in (None, "DELETED") or (crd.get("metadata") or {}).get("deletionTimestamp"):
        return None
    if not crd_established(crd):
        return None
    spec = crd.get("spec") or {}
    group, plural = spec.get("group"), (spec.get("names") or {}).get("plural")
    return (group, plural) if group and plural else None


def served(insights: Any, group: str, plural: str) -> bool:
    """Whether kopf watches or indexes the resource (it found it in discovery and a handler wants it)."""
    resources = set(insights.watched_resources) | set(insights.indexed_resources)
    return any(r.group == group and r.plural == plural for r in resources)


def wrap(
    original: Callable[..., Awaitable[None]],
    wanted: set[tuple[str, str]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[..., Awaitable[None]]:
    """`wanted`: the (group, plural) pairs the operator has handlers for; other CRDs are left to kopf."""

    async def process_discovered_resource_event(*, raw_event: Any, insights: Any, **kwargs: Any) -> None:
        await original(raw_event=raw_event, insights=insights, **kwargs)
        resource = established_resource(raw_event)
        if resource is None or resource not in wanted or served(insights, *resource):
            return
        started, delay = clock(), FIRST_DELAY
        log.info(
            "%s.%s is established but API discovery does not list it yet: asking again",
            resource[1],
            resource[0],
        )
        while clock() - started < MAX_WAIT:
            await sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
            await original(raw_event=raw_event, insights=insights, **kwargs)
            if served(insights, *resource):
                log.info(
                    "API discovery lists %s.%s after %.1fs: watching it",
                    resource[1],
                    resource[0],
                    clock() - started,
                )
                return
        log.warning(
            "API discovery still does not list %s.%s %.0fs after its CRD said Established; "
            "its objects are not watched until the CRD changes again or the operator restarts",
            resource[1],
            resource[0],
            MAX_WAIT,
        )

    return process_discovered_resource_event


def install(wanted: set[tuple[str, str]]) -> None:
    """Wrap kopf's CRD-event rescan once (resource_observer looks it up in its module when it starts)."""
    if getattr(observation.process_discovered_resource_event, "_servedmodel_discovery_lag", False):
        return
    wrapped = wrap(observation.process_discovered_resource_event, wanted)
    wrapped._servedmodel_discovery_lag = True  # type: ignore[attr-defined]
    wrapped.__wrapped__ = observation.process_discovered_resource_event  # type: ignore[attr-defined]
    observation.process_discovered_resource_event = wrapped  # type: ignore[assignment]
