"""Background tasks that cannot die silently.

The operator runs loops beside kopf's handlers (the reconcile workers, the resync timer, the model-server
poller, the event sender). An exception that escapes such a loop would end its task without a word, since
nobody awaits it until shutdown: the operator would look alive and quietly stop doing that job. Every
such loop runs under `supervised`: an exception is logged with its traceback, counted in
`servedmodel_background_restarts_total`, and the loop is started again after a backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from . import metrics

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 60.0
HEALTHY_SECONDS = 300.0  # a run this long resets the backoff


async def run_supervised(
    name: str,
    body: Callable[[], Awaitable[None]],
    first_delay: float = FIRST_DELAY_SECONDS,
    max_delay: float = MAX_DELAY_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run `body()` until cancelled; restart it (logged, with backoff) whenever it raises or returns."""
    delay = first_delay
    while True:
        started = clock()
        try:
            await body()
            error: Exception | None = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
        if clock() - started >= HEALTHY_SECONDS:
            delay = first_delay
        if error is not None:
            log.error("background task %s failed: restarting it in %.1fs", name, delay, exc_info=error)
        else:
            log.error(
                "background task %s returned (it should run until shutdown): restarting it in %.1fs",
                name,
                delay,
            )
        metrics.BACKGROUND_RESTARTS.labels(name).inc()
        await sleep(delay)
        delay = min(max_delay, delay * 2)


def supervised(
    name: str,
    body: Callable[[], Awaitable[None]],
    first_delay: float = FIRST_DELAY_SECONDS,
    max_delay: float = MAX_DELAY_SECONDS,
) -> asyncio.Task:
    """A task running `body` under `run_supervised` (cancel it to stop)."""
    return asyncio.create_task(run_supervised(name, body, first_delay, max_delay), name=name)


def log_failure(task: asyncio.Task) -> None:
    """Done-callback for fire-and-forget tasks: an exception is logged at once, not at garbage collection."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("task %s failed", task.get_name(), exc_info=exc)
