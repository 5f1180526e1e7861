"""A watch whose CRD is gone (404) waits for it with a growing delay and resumes (missing_crd.py), instead
of letting the 404 end the operator."""

from __future__ import annotations

import asyncio
import logging

import pytest
from kopf._cogs.clients import errors, watching
from kopf._cogs.structs.references import Resource
from servedmodel_operator import missing_crd

SERVEDMODELS = Resource("servedmodel.io", "v1alpha1", "servedmodels", kind="ServedModel")
LISTED = watching.Bookmark.LISTED
EVENT = {"type": None, "object": {"metadata": {"name": "m", "uid": "1"}}}


def not_found() -> errors.APINotFoundError:
    payload = {"code": 404, "message": "the server could not find the requested resource"}
    return errors.APINotFoundError(payload, status=404, headers={})


def attempts(*outcomes):
    """An original stream whose n-th call yields outcomes[n]'s items, or raises it if it is an exception."""
    calls = []

    async def original(**_):
        outcome = outcomes[len(calls)]
        calls.append(outcome)
        if isinstance(outcome, BaseException):
            raise outcome
        for item in outcome:
            yield item

    return original, calls


def collect(stream, pause_waiter=None):
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    async def run():
        waiter = pause_waiter if pause_waiter is not None else asyncio.get_running_loop().create_future()
        wrapped = missing_crd.wrap(stream, sleep=sleep)
        return [i async for i in wrapped(resource=SERVEDMODELS, namespace=None, operator_pause_waiter=waiter)]

    return asyncio.run(run()), sleeps


def test_a_missing_crd_is_waited_for_with_growing_delays_then_the_stream_resumes(caplog):
    original, calls = attempts(*[not_found()] * 7, [EVENT, LISTED])
    with caplog.at_level(logging.DEBUG, logger="servedmodel_operator.missing_crd"):
        items, sleeps = collect(original)
    assert items == [EVENT, LISTED]  # the fresh listing goes through unchanged
    assert len(calls) == 8
    assert sleeps == [1, 2, 4, 8, 16, 30, 30]
    errors_logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors_logged == [
        "the ServedModel CRD servedmodels.servedmodel.io is not installed (the API server answers 404 for "
        "/apis/servedmodel.io/v1alpha1/servedmodels): waiting for it to come back, asking again every 1 "
        "to 30 seconds"
    ]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["the ServedModel CRD servedmodels.servedmodel.io is installed again: resuming its watch"]


def test_a_stream_that_never_meets_a_404_is_passed_through():
    original, calls = attempts([EVENT, LISTED])
    items, sleeps = collect(original)
    assert (items, sleeps, len(calls)) == ([EVENT, LISTED], [], 1)


def test_a_paused_operator_stops_asking():
    original, calls = attempts(not_found(), [EVENT])

    async def run():
        waiter = asyncio.get_running_loop().create_future()
        waiter.set_result(None)  # paused (e.g. leadership lost) while waiting
        sleeps = []

        async def sleep(delay):
            sleeps.append(delay)

        wrapped = missing_crd.wrap(original, sleep=sleep)
        items = [
            i async for i in wrapped(resource=SERVEDMODELS, namespace=None, operator_pause_waiter=waiter)
        ]
        return items, sleeps

    items, sleeps = asyncio.run(run())
    assert (items, sleeps, len(calls)) == ([], [1], 1)


@pytest.mark.parametrize(
    "error",
    [
        errors.APIForbiddenError({"code": 403}, status=403, headers={}),
        errors.APIServerError({"code": 500}, status=500, headers={}),
    ],
    ids=["403", "500"],
)
def test_other_errors_are_not_swallowed(error):
    original, _ = attempts(error)
    with pytest.raises(type(error)):
        collect(original)


def wait_until_served(answers):
    """Run missing_crd.wait_until_served against `answers` (bools, or exceptions raised); the delays slept."""
    asked, sleeps = [], []

    def serves() -> bool:
        answer = answers[len(asked)]
        asked.append(answer)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    asyncio.run(missing_crd.wait_until_served(serves, SERVEDMODELS, sleep=sleep))
    return asked, sleeps


def test_start_up_waits_until_the_crd_is_served(caplog):
    with caplog.at_level(logging.INFO, logger="servedmodel_operator.missing_crd"):
        asked, sleeps = wait_until_served([False, False, ConnectionError("refused"), False, True])
    assert len(asked) == 5 and sleeps == [1, 2, 4, 8]
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages == [
        (
            logging.ERROR,
            "the ServedModel CRD servedmodels.servedmodel.io is not installed (API discovery has no "
            "/apis/servedmodel.io/v1alpha1/servedmodels): waiting for it before starting, asking again every "
            "1 to 30 seconds",
        ),
        (
            logging.WARNING,
            "could not ask whether the ServedModel CRD servedmodels.servedmodel.io is installed: refused; "
            "next try in 4s",
        ),
        (logging.INFO, "the ServedModel CRD servedmodels.servedmodel.io is installed: starting"),
    ]


def test_start_up_with_the_crd_installed_neither_waits_nor_logs(caplog):
    with caplog.at_level(logging.DEBUG, logger="servedmodel_operator.missing_crd"):
        asked, sleeps = wait_until_served([True])
    assert (asked, sleeps, caplog.records) == ([True], [], [])
