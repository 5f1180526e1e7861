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


class Absence:
    """One wait for a missing CRD: says once, plainly, that it is missing (later only at debug level), and
    how long to wait before asking again (growing from FIRST_DELAY to MAX_DELAY)."""

    def __init__(self, resource: Any, how: str, until: str) -> None:
        self.resource, self.how, self.until = resource, how, until
        self.delay, self.told = 0.0, False

    def _next(self) -> float:
        self.delay = next_delay(self.delay) if self.delay else FIRST_DELAY
        return self.delay

    def missing(self) -> float:
        delay = self._next()
        if not self.told:
            log.error(
                "%s is not installed (%s %s): waiting for it %s, asking again every %.0f to %.0f seconds",
                describe(self.resource),
                self.how,
                api_path(self.resource),
                self.until,
                FIRST_DELAY,
                MAX_DELAY,
            )
            self.told = True
        else:
            log.debug("%s is still not installed; next try in %.0fs", describe(self.resource), delay)
        return delay

    def unanswered(self, exc: Exception) -> float:
        delay = self._next()
        log.warning(
            "could not ask whether %s is installed: %s; next try in %.0fs",
            describe(self.resource),
            exc,
            delay,
        )
        return delay

    def found(self, news: str) -> None:
        if self.told:
            log.info("%s is installed%s", describe(self.resource), news)
        self.delay, self.told = 0.0, False


def wrap(original: Any, sleep: Any = asyncio.sleep) -> Any:
    async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
        pause_waiter = kwargs.get("operator_pause_waiter")
        absence = Absence(kwargs.get("resource"), "the API server answers 404 for", "to come back")
        while True:
            try:
                async for item in original(**kwargs):
                    if absence.told:
                        absence.found(" again: resuming its watch")
                    yield item
                return
            except errors.APINotFoundError:
                await sleep(absence.missing())
                if pause_waiter is not None and pause_waiter.done():
                    return  # paused meanwhile (e.g. leadership lost): kopf restarts the stream when unpaused

    return continuous_watch


async def wait_until_served(
    serves: Callable[[], bool], resource: Any, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> None:
    """Return once `serves()` (API discovery: blocking, so run in a thread) says the resource is there; a
    failed question (API server not reachable yet) is logged and asked again."""
    absence = Absence(resource, "API discovery has no", "before starting")
    while True:
        try:
            if await asyncio.to_thread(serves):
                break
            delay = absence.missing()
        except Exception as exc:  # noqa: BLE001 (any failure to ask is asked again)
            delay = absence.unanswered(exc)
        await sleep(delay)
    absence.found(": starting")


def install() -> None:
    """Wrap kopf's watch stream once (infinite_watch looks continuous_watch up in its module)."""
    if getattr(watching.continuous_watch, "_servedmodel_missing_crd", False):
        return
    wrapped = wrap(watching.continuous_watch)
    wrapped._servedmodel_missing_crd = True  # type: ignore[attr-defined]
    watching.continuous_watch = wrapped
