"""Events: posted off the reconcile worker, aggregated and rate limited like client-go's recorder, and one
per transition (not one per child, not one per resync)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from operatorfakes import FakeApi, FakeCache, FakeClock, refs
from servedmodel_operator import status as st
from servedmodel_operator.event_policy import EventPolicy, summary_message
from servedmodel_operator.event_recorder import COMBINED, Correlator, EventRecorder, involved_reference
from servedmodel_operator.kube import ApiError
from servedmodel_operator.reconciler import Reconciler

SM = {
    "apiVersion": "servedmodel.io/v1alpha1",
    "kind": "ServedModel",
    "metadata": {"name": "m", "namespace": "ns", "uid": "u1", "generation": 1, "resourceVersion": "7"},
    "spec": {"storage": {"persistentVolumeClaim": {"claimName": "models"}, "path": "m"}},
}


class EventApi:
    """Records Event creates and count patches; `gate` (when set) holds every request until it opens."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []
        self.gate = gate
        self.missing: set[str] = set()

    def create_event(self, event):
        if self.gate is not None:
            assert self.gate.wait(10)
        self.created.append(event)
        return {"metadata": {"name": f"m.{len(self.created)}"}}

    def patch_event(self, namespace, name, patch):
        if name in self.missing:
            raise ApiError(404, f'events "{name}" not found', "NotFound")
        self.patched.append((name, patch))
        return {}


REF = involved_reference(SM)


def test_token_bucket_per_object_burst_25_then_one_per_5_minutes():
    clock = FakeClock(100.0)
    c = Correlator(clock=clock)
    assert [c.allow(REF) for _ in range(26)] == [True] * 25 + [False]
    other = {**REF, "name": "n", "uid": "u2"}
    assert c.allow(other), "another object has its own bucket"
    clock.now += 299
    assert not c.allow(REF)
    clock.now += 2  # 301 s after the burst: one token back
    assert c.allow(REF) and not c.allow(REF)


def test_similar_events_are_combined_after_ten_in_ten_minutes():
    clock = FakeClock(100.0)
    c = Correlator(clock=clock)
    messages = [c.aggregate(REF, "Warning", "ApplyFailed", f"rejected {i}") for i in range(12)]
    assert messages[:10] == [f"rejected {i}" for i in range(10)]
    assert messages[10] == COMBINED + "rejected 10"
    clock.now += 601  # a new window
    assert c.aggregate(REF, "Warning", "ApplyFailed", "rejected 12") == "rejected 12"


def test_a_repeated_event_counts_on_the_existing_one():
    api = EventApi()
    rec = EventRecorder(api)
    for _ in range(3):
        rec.send_now(REF, "Warning", "StorageNotFound", "claim models is missing")
    assert len(api.created) == 1
    assert api.created[0]["involvedObject"] == {
        "apiVersion": "servedmodel.io/v1alpha1",
        "kind": "ServedModel",
        "name": "m",
        "namespace": "ns",
        "uid": "u1",
        "resourceVersion": "7",
    }
    assert api.created[0]["count"] == 1 and api.created[0]["source"] == {"component": "servedmodel-operator"}
    assert [(name, p["count"]) for name, p in api.patched] == [("m.1", 2), ("m.1", 3)]
    # The Event expired (the API server keeps them an hour): a new one is posted.
    api.missing.add("m.1")
    rec.send_now(REF, "Warning", "StorageNotFound", "claim models is missing")
    assert len(api.created) == 2


def test_record_returns_at_once_while_the_api_is_slow_and_drops_when_the_queue_is_full():
    gate = threading.Event()
    api = EventApi(gate)

    async def scenario():
        rec = EventRecorder(api, queue_size=3)
        rec.start()
        for i in range(5):  # the sender holds one, the queue three, the fifth is dropped
            rec.record(SM, "Normal", "Created", f"Created thing {i}")
            await asyncio.sleep(0)
        assert api.created == []  # nothing sent yet: the API is blocked, and record() did not wait
        gate.set()
        await rec.flush()
        await rec.stop()

    asyncio.run(scenario())
    assert [e["message"] for e in api.created] == [f"Created thing {i}" for i in range(4)]


def test_summary_names_every_child_in_one_sentence():
    children = [("ConfigMap", "m-config"), ("Service", "m"), ("Deployment", "m")]
    assert summary_message("Created", children) == "Created ConfigMap m-config, Service m and Deployment m"
    assert summary_message("DriftCorrected", children[2:]) == (
        "Restored Deployment m, which was changed outside the operator"
    )
    assert summary_message("Deleted", [("HorizontalPodAutoscaler", "m")]) == (
        "Deleted HorizontalPodAutoscaler m, which the spec no longer asks for"
    )


class Collect:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def record(self, involved, type_, reason, message):
        self.events.append((type_, reason, message))


def test_ready_is_announced_once_per_reason_and_generation():
    rec = Collect()
    policy = EventPolicy(rec)
    serving = st.Condition(st.READY, True, "ModelServing", "1/1 ready")
    policy.ready(("ns", "m"), SM, serving, 1)  # already serving when the operator starts: nothing new
    policy.ready(("ns", "m"), SM, st.Condition(st.READY, False, "ReplicasNotReady", "0/1"), 2)
    policy.ready(("ns", "m"), SM, serving, 2)
    policy.ready(("ns", "m"), SM, serving, 2)  # a resync
    policy.ready(("ns", "m"), SM, st.Condition(st.READY, None, "ModelServerUnreachable", "down"), 2)
    assert rec.events == [
        ("Normal", "ModelServing", "1/1 ready"),
        ("Warning", "ModelServerUnreachable", "down"),
    ]


# -- through the reconciler ---------------------------------------------------------------------------


class ClusterApi(EventApi, FakeApi):
    """The whole API the reconciler uses, its Events recorded (and gated) by EventApi."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        EventApi.__init__(self, gate)
        FakeApi.__init__(self)


def test_one_event_for_the_children_a_reconcile_created():
    api = ClusterApi()
    asyncio.run(Reconciler(api=api, cache=FakeCache(SM)).reconcile(("ns", "m")))
    assert refs(api.applied) == [("ConfigMap", "m-config"), ("Service", "m"), ("Deployment", "m")]
    assert [(e["reason"], e["message"]) for e in api.created] == [
        ("Created", "Created ConfigMap m-config, Service m and Deployment m")
    ]


def test_a_reconcile_does_not_wait_for_its_events():
    gate = threading.Event()  # the API server never answers an event while closed
    api = ClusterApi(gate)

    async def scenario():
        rec = EventRecorder(api)
        rec.start()
        reconciler = Reconciler(api=api, cache=FakeCache(SM), events=EventPolicy(rec))
        await asyncio.wait_for(reconciler.reconcile(("ns", "m")), timeout=5)
        assert len(api.applied) == 3 and api.created == []
        gate.set()
        await rec.flush()
        await rec.stop()

    asyncio.run(scenario())
    assert [e["reason"] for e in api.created] == ["Created"]
