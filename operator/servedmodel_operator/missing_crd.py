"""A CRD deleted while the operator runs: wait for it to come back instead of exiting.

kopf would notice a CRD's deletion through its CRD watch and stop that resource's watch quietly, but ours
is narrowed to the ServiceMonitor CRD (watches.py: field selectors cannot name two CRDs), so the
ServedModel watch itself meets the deletion: its next list or watch request gets 404, which kopf treats as
fatal, and the whole operator exits. This wraps kopf's watch stream: on 404 it logs once, plainly, that
the CRD is not installed, asks again with a growing delay (polling needs no rights beyond the list and
watch the operator already has), and says so when the CRD is back; the stream then lists afresh and the
operator reconciles as after any relist. Deleting a CRD deletes its objects first, so their DELETED events
have already cleared kopf's caches (and relist.py reports any that were missed).

At start-up the same holds the other way round: kopf looks for the resources it serves once, after the
start-up handlers (and would never see a CRD installed later, through the narrowed watch), so a start-up
handler waits here, in the same words, until the API server serves ServedModels.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from kopf._cogs.clients import errors, watching

log = logging.getLogger(__name__)

FIRST_DELAY = 1.0
MAX_DELAY = 30.0


def describe(resource: Any) -> str:
    """`the ServedModel CRD servedmodels.servedmodel.io`: what a user would look for with kubectl."""
    kind = getattr(resource, "kind", None) or "custom resource"
    plural, group = getattr(resource, "plural", "?"), getattr(resource, "group", "")
    return f"the {kind} CRD {plural}.{group}" if group else f"the {kind} API {plural}"


def api_path(resource: Any) -> str:
    group, version = getattr(resource, "group", ""), getattr(resource, "version", "?")
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    return f"{prefix}/{getattr(resource, 'plural', '?')}"


def next_delay(delay: float) -> float:
    return min(delay * 2, MAX_DELAY)


def wrap(original: Any, sleep: Any = asyncio.sleep) -> Any:
    async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
        resource = kwargs.get("resource")
        pause_waiter = kwargs.get("operator_pause_waiter")
        delay = 0.0  # 0: the CRD was there at the last request
        while True:
            try:
                async for item in original(**kwargs):
                    if delay:
                        log.info("%s is installed again: resuming its watch", describe(resource))
                        delay = 0.0
                    yield item
                return
            except errors.APINotFoundError:
                if not delay:
                    log.error(
                        "%s is not installed (the API server answers 404 for %s): waiting for it to come "
                        "back, asking again every %.0f to %.0f seconds",
                        describe(resource),
                        api_path(resource),
                        FIRST_DELAY,
                        MAX_DELAY,
                    )
                    delay = FIRST_DELAY
                else:
                    log.debug("%s is still not installed; next try in %.0fs", describe(resource), delay)
                await sleep(delay)
                delay = next_delay(delay)
                if pause_waiter is not None and pause_waiter.done():
                    return  # paused meanwhile (e.g. leadership lost): kopf restarts the stream when unpaused

    return continuous_watch


async def wait_until_served(
    serves: Callable[[], bool], resource: Any, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> None:
    """Return once `serves()` (API discovery: blocking, so run in a thread) says the resource is there; a
    failed question (API server not reachable yet) is logged and asked again."""
    delay, told = FIRST_DELAY, False
    while True:
        try:
            if await asyncio.to_thread(serves):
                break
            if not told:
                log.error(
                    "%s is not installed (API discovery has no %s): waiting for it before starting, asking "
                    "again every %.0f to %.0f seconds",
                    describe(resource),
                    api_path(resource),
                    FIRST_DELAY,
                    MAX_DELAY,
                )
                told = True
            else:
                log.debug("%s is still not installed; next try in %.0fs", describe(resource), delay)
        except Exception as exc:  # noqa: BLE001 (any failure to ask is asked again)
            log.warning(
                "could not ask whether %s is installed: %s; next try in %.0fs", describe(resource), exc, delay
            )
        await sleep(delay)
        delay = next_delay(delay)
    if told:
        log.info("%s is installed: starting", describe(resource))


def install() -> None:
    """Wrap kopf's watch stream once (infinite_watch looks continuous_watch up in its module)."""
    if getattr(watching.continuous_watch, "_servedmodel_missing_crd", False):
        return
    wrapped = wrap(watching.continuous_watch)
    wrapped._servedmodel_missing_crd = True  # type: ignore[attr-defined]
    watching.continuous_watch = wrapped
