"""The model servers are polled from their own task: a reconcile never waits for one, a poll enqueues its
ServedModel only when what it learned changed, and an unreachable server shows in status."""

from __future__ import annotations

import asyncio
from typing import Any

from operatorfakes import FakeApi, FakeCache, FakeClock
from servedmodel_operator.modelserver import (
    FAST_SECONDS,
    MAX_BACKOFF_SECONDS,
    SETTLE_SECONDS,
    SLOW_SECONDS,
    ModelServerPoller,
    VersionState,
)
from servedmodel_operator.reconciler import Reconciler

KEY = ("ns", "m")
URL = "http://m.ns.svc:8501/v1/models/m"


class Server:
    """Stands in for the HTTP GET: an answer, a failure, or (with `hold`) no answer until released."""

    def __init__(self) -> None:
        self.versions = [VersionState(1, "AVAILABLE")]
        self.reachable = True
        self.calls: list[str] = []
        self.hold: asyncio.Event | None = None

    async def get(self, url: str) -> list[VersionState]:
        self.calls.append(url)
        if self.hold is not None:
            await self.hold.wait()
        if not self.reachable:
            raise OSError("connection refused")
        return list(self.versions)


def poller_with(server: Server, clock: FakeClock, changes: list) -> ModelServerPoller:
    poller = ModelServerPoller(clock=clock, on_change=changes.append)
    poller._get = server.get
    return poller


def test_a_poll_enqueues_only_when_what_it_learned_changed():
    clock, server, changes = FakeClock(), Server(), []
    poller = poller_with(server, clock, changes)

    async def scenario():
        poller.start()  # the task is running, but the test drives the steps itself with poll_due()
        poller.watch(KEY, URL, "1", busy=False)
        assert await poller.poll_due() == 1
        assert changes == [KEY]  # the first answer
        seen = poller.observed(KEY)
        assert seen.polled and seen.reachable and seen.versions == [VersionState(1, "AVAILABLE")]
        for _ in range(3):  # the same answer again and again: no reconcile
            clock.now += 100
            await poller.poll_due()
        assert len(server.calls) == 4 and changes == [KEY]
        server.versions = [VersionState(2, "AVAILABLE"), VersionState(1, "END")]
        clock.now += 100
        await poller.poll_due()
        assert changes == [KEY, KEY]
        server.reachable = False
        clock.now += 100
        await poller.poll_due()
        assert changes == [KEY] * 3
        seen = poller.observed(KEY)
        assert not seen.reachable and "connection refused" in seen.error
        assert seen.versions == [VersionState(2, "AVAILABLE"), VersionState(1, "END")]  # last answer kept
        clock.now += 1000
        await poller.poll_due()  # still unreachable: nothing new
        assert changes == [KEY] * 3
        await poller.stop()

    asyncio.run(scenario())


def test_cadence_fast_while_changing_slow_when_settled_backoff_when_unreachable():
    clock, server, changes = FakeClock(), Server(), []
    poller = poller_with(server, clock, changes)

    async def scenario():
        # First seen (an operator start) with everything AVAILABLE: not a change, straight to the slow period.
        poller.watch(KEY, URL, "1", busy=False)
        await poller.poll_due()
        assert 0.8 * SLOW_SECONDS <= poller.next_due() <= 1.2 * SLOW_SECONDS
        # A spec change: asked at once, then fast for SETTLE_SECONDS.
        poller.watch(KEY, URL, "2", busy=False)
        assert poller.next_due() == 0
        await poller.poll_due()
        assert poller.next_due() == FAST_SECONDS
        clock.now += SETTLE_SECONDS + 1
        await poller.poll_due()
        assert poller.next_due() >= 0.8 * SLOW_SECONDS
        # A ServedModel created moments ago counts as just changed: fast until SETTLE_SECONDS after creation.
        poller.watch(("ns", "new"), URL, "1", busy=False, age=30)
        await poller.poll_due()
        assert poller._entries[("ns", "new")].next_poll == clock.now + FAST_SECONDS
        clock.now += SETTLE_SECONDS - 30 + 1
        await poller.poll_due()
        assert poller._entries[("ns", "new")].next_poll >= clock.now + 0.8 * SLOW_SECONDS
        poller.unwatch(("ns", "new"))
        # A version still loading keeps the fast cadence, as does a rollout.
        server.versions = [VersionState(3, "LOADING"), VersionState(2, "AVAILABLE")]
        clock.now += 100
        await poller.poll_due()
        assert poller.next_due() == FAST_SECONDS
        server.versions = [VersionState(3, "AVAILABLE")]
        clock.now += FAST_SECONDS
        await poller.poll_due()
        poller.watch(KEY, URL, "2", busy=True)  # rolling out: pulled forward to the fast period
        assert poller.next_due() == FAST_SECONDS
        # Unreachable: exponential backoff, capped.
        server.reachable = False
        backoffs = []
        for _ in range(10):
            clock.now += 1000
            await poller.poll_due()
            backoffs.append(poller.next_due())
        assert backoffs[:3] == [FAST_SECONDS, 2 * FAST_SECONDS, 4 * FAST_SECONDS]
        assert max(backoffs) == MAX_BACKOFF_SECONDS
        # A server no pod stands behind is not asked at all.
        poller.unwatch(KEY)
        clock.now += 1000
        assert await poller.poll_due() == 0 and poller.next_due() is None

    asyncio.run(scenario())


def test_at_most_max_concurrent_requests_at_once():
    clock, server, changes = FakeClock(), Server(), []
    poller = poller_with(server, clock, changes)
    poller.max_concurrent = 3

    async def scenario():
        poller.start()
        server.hold = asyncio.Event()
        for i in range(10):
            poller.watch(("ns", f"m{i}"), f"{URL}{i}", "1", busy=False)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(server.calls) == 3  # the other 7 wait for a slot
        server.hold.set()
        for _ in range(200):
            await asyncio.sleep(0)
            if len(changes) == 10:
                break
        assert len(server.calls) == 10 and sorted(changes) == sorted(("ns", f"m{i}") for i in range(10))
        await poller.stop()

    asyncio.run(scenario())


# -- through the reconciler ---------------------------------------------------------------------------

SM = {
    "apiVersion": "servedmodel.io/v1alpha1",
    "kind": "ServedModel",
    "metadata": {"name": "m", "namespace": "ns", "uid": "u1", "generation": 1},
    "spec": {"storage": {"persistentVolumeClaim": {"claimName": "models"}, "path": "m"}},
}


class Api(FakeApi):
    def admit(self, obj):
        if obj["kind"] == "Deployment":  # rolled out, one pod ready (as kube-controller-manager reports)
            obj["metadata"]["generation"] = 1
            obj["status"] = {
                "observedGeneration": 1,
                "replicas": 1,
                "updatedReplicas": 1,
                "readyReplicas": 1,
            }
        return obj


class Cache(FakeCache):
    """The ServedModel holds the status the reconciler last wrote."""

    def __init__(self, api: Api) -> None:
        super().__init__(SM)
        self.api = api

    def servedmodel(self, key):
        return {**SM, "status": self.api.status}


def ready(api: Api) -> dict[str, Any]:
    return next(c for c in api.status["conditions"] if c["type"] == "Ready")


def test_a_reconcile_never_waits_for_a_model_server_and_unreachable_shows_in_status():
    clock, server, changes = FakeClock(), Server(), []
    poller = poller_with(server, clock, changes)
    api = Api()
    cache = Cache(api)
    reconciler = Reconciler(api=api, cache=cache, poller=poller)

    async def reconcile():
        await asyncio.wait_for(reconciler.reconcile(KEY), timeout=2)

    async def scenario():
        server.hold = asyncio.Event()  # the model server does not answer (yet)
        poller.start()
        await reconcile()  # applies; the Deployment (as applied) has a ready pod
        assert ready(api)["reason"] == "AwaitingModelServer" and ready(api)["status"] == "False"
        patches = len(api.status_patches)
        await reconcile()  # still no answer: the status for this generation is not rewritten
        assert len(api.status_patches) == patches
        server.reachable = False
        server.hold.set()
        for _ in range(100):
            await asyncio.sleep(0)
            if changes:
                break
        assert changes == [KEY]  # the poll enqueued its ServedModel
        await reconcile()
        r = ready(api)
        assert (r["status"], r["reason"]) == ("Unknown", "ModelServerUnreachable")
        assert URL in r["message"] and "connection refused" in r["message"]
        assert "versions" not in api.status  # nothing claimed from an old answer
        server.reachable = True
        clock.now += 1000
        await poller.poll_due()
        await reconcile()
        r = ready(api)
        assert (r["status"], r["reason"]) == ("True", "ModelServing")
        assert api.status["versions"] == [{"version": 1, "state": "AVAILABLE"}]
        await poller.stop()

    asyncio.run(scenario())
