"""Kubernetes Events posted the way client-go's recorder posts them: off the reconcile worker, aggregated,
rate limited.

`record()` never blocks and never fails: it puts the event on a bounded queue (when the queue is full the
event is dropped and counted, as client-go's broadcaster drops), and one sender task posts them. Before an
event is sent it goes through the same three steps as client-go's EventCorrelator:

* **rate limit**: a token bucket per involved object (burst 25, one token back every 5 minutes), so an
  object in a fight cannot flood the API server with events;
* **aggregation**: more than 10 events of the same object, type and reason with different messages within
  10 minutes become one event whose message says "(combined from similar events)";
* **deduplication**: an event equal to one already posted (same object, type, reason and message) is not
  posted again: the existing Event's `count` and `lastTimestamp` are patched.

An event is never worth failing anything: API errors are logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from . import metrics
from .kube import ApiError
from .status import now_rfc3339
from .supervise import supervised

log = logging.getLogger(__name__)

BURST = 25  # client-go: defaultSpamBurst
REFILL_SECONDS = 300.0  # client-go: defaultSpamQPS = 1/300
SIMILAR_MAX = 10  # client-go: defaultAggregateMaxEvents
SIMILAR_WINDOW_SECONDS = 600.0  # client-go: defaultAggregateIntervalInSeconds
CACHE_SIZE = 4096  # client-go: maxLruCacheEntries
QUEUE_SIZE = 1000  # client-go: maxQueuedEvents
COMBINED = "(combined from similar events): "


class EventApi(Protocol):
    def create_event(self, event: dict[str, Any]) -> dict[str, Any]: ...
    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]: ...


def involved_reference(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "namespace": meta["namespace"],
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class _Posted:
    namespace: str
    name: str  # the Event object's name, to patch its count
    count: int


@dataclass
class _Similar:
    first: float
    messages: set[str] = field(default_factory=set)


@dataclass
class Correlator:
    """What happens to an event before it is sent: dropped, posted new, or counted on an existing one.

    Pure bookkeeping (no I/O), so it is unit-tested with a fake clock.
    """

    clock: Callable[[], float] = time.monotonic
    burst: int = BURST
    refill_seconds: float = REFILL_SECONDS
    similar_max: int = SIMILAR_MAX
    similar_window: float = SIMILAR_WINDOW_SECONDS
    cache_size: int = CACHE_SIZE
    _buckets: OrderedDict[tuple, _Bucket] = field(default_factory=OrderedDict)
    _similar: OrderedDict[tuple, _Similar] = field(default_factory=OrderedDict)
    _posted: OrderedDict[tuple, _Posted] = field(default_factory=OrderedDict)

    @staticmethod
    def _object_key(ref: dict[str, Any]) -> tuple:
        return (ref["namespace"], ref["kind"], ref["name"], ref.get("uid"))

    def allow(self, ref: dict[str, Any]) -> bool:
        """Token bucket per involved object."""
        key, now = self._object_key(ref), self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) / self.refill_seconds)
            bucket.updated = now
        self._remember(self._buckets, key, bucket)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def aggregate(self, ref: dict[str, Any], type_: str, reason: str, message: str) -> str:
        """The message to send: the event's own, or the combined one once similar events pile up."""
        key, now = (*self._object_key(ref), type_, reason), self.clock()
        similar = self._similar.get(key)
        if similar is None or now - similar.first > self.similar_window:
            similar = _Similar(now)
        similar.messages.add(message)
        self._remember(self._similar, key, similar)
        if len(similar.messages) > self.similar_max:
            return COMBINED + message
        return message

    def posted(self, ref: dict[str, Any], type_: str, reason: str, message: str) -> _Posted | None:
        """The Event already posted for exactly this event, if any (to count on instead of a new one)."""
        key = (*self._object_key(ref), type_, reason, message)
        found = self._posted.get(key)
        if found is not None:
            self._posted.move_to_end(key)
        return found

    def remember_posted(self, ref: dict[str, Any], type_: str, reason: str, message: str, p: _Posted) -> None:
        self._remember(self._posted, (*self._object_key(ref), type_, reason, message), p)

    def forget_posted(self, ref: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self._posted.pop((*self._object_key(ref), type_, reason, message), None)

    def _remember(self, cache: OrderedDict, key: tuple, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)


@dataclass
class EventRecorder:
    """Posts events from its own task and thread; `record` returns at once."""

    api: EventApi
    component: str = "servedmodel-operator"
    queue_size: int = QUEUE_SIZE
    correlator: Correlator = field(default_factory=Correlator)
    wall: Callable[[], str] = now_rfc3339
    _queue: asyncio.Queue | None = None
    _task: asyncio.Task | None = None
    _pool: ThreadPoolExecutor | None = None
    _pending: int = 0
    _idle: asyncio.Event | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue(self.queue_size)
        self._idle = asyncio.Event()
        self._idle.set()
        # One thread of its own: a slow API server delays events, never the reconciles' API calls.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="events")
        self._task = supervised("event-recorder", self._send_loop)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def record(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Queue an event about `involved` (a ServedModel body); never blocks, never raises."""
        if self._queue is None:
            raise RuntimeError("EventRecorder.start() was not called")
        try:
            self._queue.put_nowait((involved_reference(involved), type_, reason, message[:1024]))
        except asyncio.QueueFull:
            metrics.EVENTS.labels("dropped_queue_full").inc()
            log.warning("event queue full, dropped %s: %s", reason, message)
            return
        self._pending += 1
        assert self._idle is not None
        self._idle.clear()

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every recorded event was sent (or dropped): for tests and shutdown."""
        if self._idle is not None:
            await asyncio.wait_for(self._idle.wait(), timeout)

    async def _send_loop(self) -> None:
        assert self._queue is not None and self._idle is not None
        loop = asyncio.get_running_loop()
        while True:
            ref, type_, reason, message = await self._queue.get()
            try:
                await loop.run_in_executor(self._pool, self.send_now, ref, type_, reason, message)
            except Exception:  # never let one event stop the others
                log.exception("posting event %s failed", reason)
            finally:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()

    def send_now(self, ref: dict[str, Any], type_: str, reason: str, message: str) -> None:
        c = self.correlator
        if not c.allow(ref):
            metrics.EVENTS.labels("dropped_rate_limited").inc()
            log.debug("event rate limit: dropped %s for %s/%s", reason, ref["namespace"], ref["name"])
            return
        message = c.aggregate(ref, type_, reason, message)
        now = self.wall()
        try:
            existing = c.posted(ref, type_, reason, message)
            if existing is not None:
                try:
                    self.api.patch_event(
                        existing.namespace, existing.name, {"count": existing.count + 1, "lastTimestamp": now}
                    )
                    existing.count += 1
                    metrics.EVENTS.labels("counted").inc()
                    return
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    c.forget_posted(ref, type_, reason, message)  # expired (events live an hour): post anew
            created = self.api.create_event(self._event(ref, type_, reason, message, now))
            name = (created.get("metadata") or {}).get("name")
            if name:
                c.remember_posted(ref, type_, reason, message, _Posted(ref["namespace"], name, 1))
            metrics.EVENTS.labels("posted").inc()
        except (ApiError, requests.RequestException) as exc:
            metrics.EVENTS.labels("failed").inc()
            log.warning("could not post event %s: %s", reason, exc)

    def _event(self, ref: dict[str, Any], type_: str, reason: str, message: str, now: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ref['name']}.", "namespace": ref["namespace"]},
            "involvedObject": ref,
            "type": type_,
            "reason": reason,
            "message": message,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
