"""A CRD event that comes before API discovery lists the CRD's resource: kopf's rescan is repeated until
discovery lists it (discovery_lag.py), so the resource is watched; the real kopf rescan runs here with
discovery answers played back in order."""

from __future__ import annotations

import asyncio
import logging

import kopf
import pytest
from kopf._cogs.clients import scanning
from kopf._cogs.structs import references
from kopf._core.reactor import observation
from servedmodel_operator import discovery_lag

MONITORS = references.Resource(
    "monitoring.coreos.com",
    "v1",
    "servicemonitors",
    kind="ServiceMonitor",
    namespaced=True,
    verbs=["list", "watch"],
)
WANTED = {("monitoring.coreos.com", "servicemonitors")}
# kopf's own rescan, whether or not the operator (imported by another test) has wrapped it already
KOPF_RESCAN = getattr(
    observation.process_discovered_resource_event,
    "__wrapped__",
    observation.process_discovered_resource_event,
)


def crd_event(type_="MODIFIED", established=True, deleting=False):
    metadata = {"name": "servicemonitors.monitoring.coreos.com"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    return {
        "type": type_,
        "object": {
            "metadata": metadata,
            "spec": {"group": "monitoring.coreos.com", "names": {"plural": "servicemonitors"}},
            "status": {"conditions": [{"type": "Established", "status": "True" if established else "False"}]},
        },
    }


def run(event, discovery_answers, monkeypatch):
    """The wrapped kopf rescan for `event`, discovery answering `discovery_answers` in turn (the last one
    repeats); returns the insights, the number of discovery questions and the sleeps between them."""
    asked, sleeps = [], []

    async def scan_resources(**_):
        answer = discovery_answers[min(len(asked), len(discovery_answers) - 1)]
        asked.append(answer)
        return set(answer)

    async def sleep(delay):
        sleeps.append(delay)
        clock.now += delay

    class Clock:
        now = 0.0

        def __call__(self):
            return self.now

    clock = Clock()
    monkeypatch.setattr(scanning, "scan_resources", scan_resources)
    registry = kopf.OperatorRegistry()
    kopf.index(
        "monitoring.coreos.com", "v1", "servicemonitors", registry=registry, id="servicemonitor_index"
    )(lambda **_: None)
    wrapped = discovery_lag.wrap(KOPF_RESCAN, WANTED, sleep=sleep, clock=clock)

    async def go():
        insights = references.Insights()
        await wrapped(raw_event=event, settings=kopf.OperatorSettings(), registry=registry, insights=insights)
        return insights

    return asyncio.run(go()), len(asked), sleeps


def test_a_lagging_discovery_is_asked_again_until_it_lists_the_resource(monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="servedmodel_operator.discovery_lag"):
        insights, asked, sleeps = run(crd_event(), [set(), set(), set(), {MONITORS}], monkeypatch)
    assert MONITORS in insights.indexed_resources  # kopf now starts the watch and fills the index
    assert asked == 4
    assert sleeps == [0.2, 0.4, 0.8]
    assert "API discovery lists servicemonitors.monitoring.coreos.com after 1.4s" in caplog.text


def test_without_the_wrapper_the_same_answers_leave_the_resource_unwatched(monkeypatch):
    """The failure the wrapper exists for: kopf asks once, and that answer is the last word."""
    monkeypatch.setattr(discovery_lag, "MAX_WAIT", 0.0)
    insights, asked, _ = run(crd_event(), [set(), {MONITORS}], monkeypatch)
    assert asked == 1 and not insights.indexed_resources


def test_a_resource_discovery_already_lists_is_not_asked_about_again(monkeypatch):
    insights, asked, sleeps = run(crd_event(), [{MONITORS}], monkeypatch)
    assert MONITORS in insights.indexed_resources and asked == 1 and sleeps == []


@pytest.mark.parametrize(
    "event",
    [crd_event("DELETED"), crd_event(deleting=True), crd_event("ADDED", established=False)],
    ids=["deleted", "being-deleted", "not-established-yet"],
)
def test_a_crd_that_is_not_established_and_present_is_left_to_kopf(event, monkeypatch):
    insights, asked, sleeps = run(event, [set()], monkeypatch)
    assert asked == 1 and sleeps == [] and not insights.indexed_resources


def test_a_crd_the_operator_has_no_handler_for_is_left_to_kopf(monkeypatch):
    event = crd_event()
    event["object"]["spec"] = {"group": "example.com", "names": {"plural": "widgets"}}
    _, asked, sleeps = run(event, [set()], monkeypatch)
    assert asked == 1 and sleeps == []


def test_a_discovery_that_never_lists_it_gives_up_with_a_warning(monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="servedmodel_operator.discovery_lag"):
        insights, asked, sleeps = run(crd_event(), [set()], monkeypatch)
    assert not insights.indexed_resources
    assert sum(sleeps) >= discovery_lag.MAX_WAIT and max(sleeps) == discovery_lag.MAX_DELAY
    assert asked == len(sleeps) + 1
    assert "still does not list servicemonitors.monitoring.coreos.com 120s after" in caplog.text


def test_the_operator_installs_the_wrapper_for_its_child_resources():
    import servedmodel_operator.handlers  # noqa: F401 (installs it at import, before kopf starts)

    assert getattr(observation.process_discovered_resource_event, "_servedmodel_discovery_lag", False)
