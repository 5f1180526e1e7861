"""The operator's background loops never die silently: a failure is logged with its traceback, counted, and
the loop runs again; the model-server poller keeps polling through a bug in one poll or in its own loop."""

from __future__ import annotations

import asyncio
import logging

from operatorfakes import FakeClock
from servedmodel_operator import metrics
from servedmodel_operator.modelserver import FAST_SECONDS, ModelServerPoller, VersionState
from servedmodel_operator.supervise import run_supervised

KEY = ("ns", "m")
URL = "http://m.ns.svc:8501/v1/models/m"


def restarts(task: str) -> float:
    return metrics.BACKGROUND_RESTARTS.labels(task)._value.get()


async def until(check, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_a_failing_loop_is_logged_counted_and_restarted_with_backoff(caplog):
    runs: list[int] = []
    slept: list[float] = []

    async def body() -> None:
        runs.append(len(runs))
        if len(runs) <= 3:
            raise RuntimeError(f"boom {len(runs)}")
        await asyncio.Event().wait()  # the fourth run lives until cancelled

    async def sleep(delay: float) -> None:
        slept.append(delay)
        await asyncio.sleep(0)

    async def scenario() -> None:
        task = asyncio.get_running_loop().create_task(
            run_supervised("unit-loop", body, first_delay=0.5, max_delay=1.5, sleep=sleep)
        )
        await until(lambda: len(runs) == 4)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()  # cancellation stops it, and is no failure

    before = restarts("unit-loop")
    with caplog.at_level(logging.ERROR, logger="servedmodel_operator.supervise"):
        asyncio.run(scenario())
    assert slept == [0.5, 1.0, 1.5]  # doubling, capped
    failures = [r for r in caplog.records if "background task unit-loop failed" in r.getMessage()]
    assert len(failures) == 3
    assert failures[0].exc_info is not None and str(failures[0].exc_info[1]) == "boom 1"  # the traceback
    assert restarts("unit-loop") - before == 3


def test_the_poller_loop_is_restarted_after_it_fails_and_keeps_polling(caplog):
    clock, calls, changes = FakeClock(), [], []
    poller = ModelServerPoller(clock=clock, on_change=changes.append)

    async def get(url: str) -> list[VersionState]:
        calls.append(url)
        return [VersionState(1, "AVAILABLE")]

    poller._get = get
    original, broken = poller._start_due, [True]

    def start_due():
        if broken[0]:
            broken[0] = False
            raise RuntimeError("a bug in the poll loop")
        return original()

    poller._start_due = start_due

    async def scenario() -> None:
        poller.start(restart_delay=0.01)  # the loop's first step raises
        poller.watch(KEY, URL, "1", busy=False)
        await until(lambda: calls)  # asked anyway, by the restarted loop
        await until(lambda: changes == [KEY])
        assert poller.observed(KEY).reachable
        await poller.stop()

    before = restarts("model-server-poller")
    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    [failure] = [r for r in caplog.records if "background task model-server-poller failed" in r.getMessage()]
    assert "a bug in the poll loop" in str(failure.exc_info[1])
    assert restarts("model-server-poller") - before == 1


def test_a_poll_that_fails_unexpectedly_is_logged_and_the_server_asked_again(caplog):
    clock, calls, changes = FakeClock(), [], []
    poller = ModelServerPoller(clock=clock, on_change=changes.append)
    answers: list = [RuntimeError("a bug while asking"), AttributeError("no attribute 'get'")]

    async def get(url: str) -> list[VersionState]:
        calls.append(url)
        if answers:
            raise answers.pop(0)
        return [VersionState(1, "AVAILABLE")]

    poller._get = get

    async def scenario() -> None:
        poller.start()
        poller.watch(KEY, URL, "1", busy=False)
        # 1. An exception nobody expected (a bug): logged, and the server is asked again after a backoff.
        assert await poller.poll_due() == 1
        assert await poller.poll_due() == 0  # not at once
        clock.now += FAST_SECONDS
        # 2. An answer that is no model status: reported as such, like an unreachable server.
        assert await poller.poll_due() == 1
        seen = poller.observed(KEY)
        assert not seen.reachable and seen.error.startswith("unexpected answer (AttributeError"), seen
        assert changes == [KEY]
        # 3. Then a good answer: polled on, and the change reported.
        clock.now += 2 * FAST_SECONDS
        assert await poller.poll_due() == 1
        assert poller.observed(KEY).reachable and changes == [KEY, KEY]
        await poller.stop()

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert len(calls) == 3
    [failure] = [r for r in caplog.records if "polling the model server of ns/m failed" in r.getMessage()]
    assert "a bug while asking" in str(failure.exc_info[1])
