"""Lease-based leader election, step by step with a fake clock and an in-memory Lease with resourceVersions
(the API server's optimistic concurrency). The fault test runs the real thing with SIGKILLs."""

from __future__ import annotations

import copy

import pytest
from operatorfakes import FakeClock
from servedmodel_operator.kube import ApiError
from servedmodel_operator.leader import LeaderElector, LeaseConfig


class LeaseStore:
    """One Lease, as the API server keeps it: a PUT with a stale resourceVersion gets 409."""

    def __init__(self) -> None:
        self.lease: dict | None = None
        self.rv = 0
        self.down = False

    def request(self, method, path, kind, body=None, **_):
        if self.down:
            import requests

            raise requests.ConnectionError("API server down")
        if method == "GET":
            if self.lease is None:
                raise ApiError(404, "not found", "NotFound")
            return copy.deepcopy(self.lease)
        if method == "POST":
            if self.lease is not None:
                raise ApiError(409, "already exists", "AlreadyExists")
        elif method == "PUT":
            if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
                raise ApiError(409, "the object has been modified", "Conflict")
        self.rv += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(self.lease)


def elector(store, identity, clock, events):
    config = LeaseConfig("ns", "op", identity, lease_duration=15, renew_deadline=10, retry_period=2)
    return LeaderElector(
        store,
        config,
        on_started_leading=lambda: events.append(f"{identity} leads"),
        on_stopped_leading=lambda: events.append(f"{identity} stopped"),
        clock=clock,
        wall=lambda: 1.8e9 + clock.now,
    )


def test_one_leader_and_the_standby_takes_over_only_after_the_lease_duration():
    store, events = LeaseStore(), []
    clock_a, clock_b = FakeClock(100.0), FakeClock(100.0)
    a, b = elector(store, "a", clock_a, events), elector(store, "b", clock_b, events)
    assert a.try_acquire_or_renew()
    assert store.lease["spec"]["holderIdentity"] == "a" and store.lease["spec"]["leaseTransitions"] == 0
    assert not b.try_acquire_or_renew()  # held
    for _ in range(10):  # a renews every 2 s: b never gets it, however long it waits
        clock_a.now += 2
        clock_b.now += 2
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    # a dies. b measures the lease's age from the last change it saw, by its own clock.
    clock_b.now += 14.9
    assert not b.try_acquire_or_renew()
    clock_b.now += 0.2
    assert b.try_acquire_or_renew()
    assert store.lease["spec"]["holderIdentity"] == "b" and store.lease["spec"]["leaseTransitions"] == 1
    # a comes back (it was only paused): it is not the holder any more and does not take it back.
    assert not a.try_acquire_or_renew()


def test_of_two_candidates_racing_for_an_expired_lease_one_wins():
    store, events = LeaseStore(), []
    clock = FakeClock(100.0)
    old = elector(store, "old", clock, events)
    assert old.try_acquire_or_renew()
    a, b = elector(store, "a", clock, events), elector(store, "b", clock, events)
    assert not a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    clock.now += 16
    # Both read the same expired Lease; b writes first, a's write carries a stale resourceVersion.
    real_get = store.request
    stale = copy.deepcopy(store.lease)

    def a_reads_before_b_writes(method, path, kind, body=None, **kw):
        if method == "GET":
            return copy.deepcopy(stale)
        return real_get(method, path, kind, body, **kw)

    assert b.try_acquire_or_renew()
    a.api = type("Api", (), {"request": staticmethod(a_reads_before_b_writes)})()
    assert not a.try_acquire_or_renew()
    assert store.lease["spec"]["holderIdentity"] == "b"


def test_a_leader_that_cannot_renew_stops_before_anyone_can_take_over():
    store, events = LeaseStore(), []
    clock = FakeClock(100.0)
    a = elector(store, "a", clock, events)
    ticks = []

    def sleep(seconds):
        clock.now += seconds
        ticks.append(seconds)
        if len(ticks) == 3:
            store.down = True  # the API server becomes unreachable for a
        if len(ticks) > 50:
            raise AssertionError("the leader never gave up")

    a._sleep = sleep
    a.run()
    assert events == ["a leads", "a stopped"]
    last_renewal = 100.0 + 2 * 2  # renewed at the first two ticks
    assert clock.now - last_renewal > 10  # past the renew deadline ...
    assert clock.now - last_renewal <= 10 + 2  # ... by at most one retry period: well within 15 s


def test_a_released_lease_is_taken_at_once():
    store, events = LeaseStore(), []
    clock = FakeClock(100.0)
    a, b = elector(store, "a", clock, events), elector(store, "b", clock, events)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert store.lease["spec"]["holderIdentity"] == ""
    assert b.try_acquire_or_renew()


def test_timings_must_nest():
    with pytest.raises(ValueError, match="lease duration > renew deadline > retry period"):
        LeaseConfig("ns", "op", "a", lease_duration=10, renew_deadline=10, retry_period=2)
