"""A small rate-limited work queue, as controllers use: many triggers, one reconcile per key at a time.

Triggers (a ServedModel changed, one of its children changed, its PVC appeared, a resync) all just add
the key. A key already waiting is not added twice; a key being processed is re-run once after it
finishes; a failed key comes back after an exponential backoff that resets on success.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable

from . import metrics
from .supervise import supervised

log = logging.getLogger(__name__)


class Retry(Exception):
    """Reconcile again after `delay` seconds (None: the queue's backoff decides)."""

    def __init__(self, message: str, delay: float | None = None):
        super().__init__(message)
        self.delay = delay


class WorkQueue:
    def __init__(
        self,
        handler: Callable[[Hashable], Awaitable[None]],
        workers: int,
        retry_min: float = 1.0,
        retry_max: float = 300.0,
    ):
        self._handler = handler
        self._workers = workers
        self._retry_min, self._retry_max = retry_min, retry_max
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._running: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [supervised(f"reconcile-worker-{i}", self._work) for i in range(self._workers)]

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def add(self, key: Hashable) -> None:
        if key in self._running:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        """Schedule the key; an earlier schedule of the same key wins."""
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        if existing is not None:
            if existing.when() <= loop.time() + delay:
                return
            existing.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def pending(self) -> int:
        return len(self._queued) + len(self._running)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._running.add(key)
            metrics.QUEUE_DEPTH.set(self.pending())
            started = time.monotonic()
            try:
                await self._handler(key)
                self._failures.pop(key, None)
                metrics.RECONCILES.labels("ok").inc()
            except asyncio.CancelledError:
                raise
            except Retry as exc:
                metrics.RECONCILES.labels("retry").inc()
                self._backoff(key, exc.delay, str(exc))
            except Exception as exc:  # a bug or an unexpected API answer: log it, retry with backoff
                metrics.RECONCILES.labels("error").inc()
                log.exception("reconcile of %s failed", key)
                self._backoff(key, None, repr(exc))
            finally:
                metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
                self._running.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)

    def _backoff(self, key: Hashable, delay: float | None, why: str) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        if delay is None:
            delay = min(self._retry_max, self._retry_min * 2 ** (failures - 1))
        log.info("retrying %s in %.1fs: %s", key, delay, why)
        self.add_after(key, delay)
