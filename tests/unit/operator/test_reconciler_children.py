"""Children through the real reconciler with an in-memory cluster view: applied whole or not at all (a
child the API server rejects leaves nothing half-created), and pruned when the spec no longer renders them
(a delete the API server refuses is shown in status, and retried, not only logged)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from operatorfakes import FakeApi, FakeCache, refs
from servedmodel_operator.kube import ApiError
from servedmodel_operator.reconciler import Reconciler
from servedmodel_operator.workqueue import Retry

FORBIDDEN = (
    'deployments.apps "m-canary" is forbidden: User "op" cannot delete resource "deployments" in API group '
    '"apps" in the namespace "ns"'
)


class Api(FakeApi):
    """Refuses to delete the children named in `refuse`, and rejects every apply of the kind `reject`."""

    def __init__(self, refuse: set[str], reject: str = "") -> None:
        super().__init__()
        self.refuse, self.reject = refuse, reject

    def admit(self, obj):
        if obj["kind"] == self.reject:
            name = obj["metadata"]["name"]
            raise ApiError(422, f'{obj["kind"]} "{name}" is invalid: exceeded quota', "Invalid")
        return obj

    def delete(self, obj):
        if obj["metadata"]["name"] in self.refuse:
            raise ApiError(403, FORBIDDEN, "Forbidden")
        super().delete(obj)


SM = {
    "apiVersion": "servedmodel.io/v1alpha1",
    "kind": "ServedModel",
    "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 2},
    "spec": {"storage": {"persistentVolumeClaim": {"claimName": "models"}}, "replicas": 2},
}


def leftover(kind: str, name: str, api_version: str) -> dict[str, Any]:
    """A child a canary left behind (the spec no longer has a canary)."""
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": "ns"}}


LEFTOVERS = [
    leftover("Deployment", "m-canary", "apps/v1"),
    leftover("ConfigMap", "m-canary-config", "v1"),
    leftover("Service", "m-canary", "v1"),
]


def degraded(patch: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in patch["status"]["conditions"] if c["type"] == "Degraded")


def test_a_refused_delete_is_degraded_in_status_and_retried():
    api = Api(refuse={"m-canary"})
    reconciler = Reconciler(api=api, cache=FakeCache(SM, LEFTOVERS))
    with pytest.raises(Retry):
        asyncio.run(reconciler.reconcile(("ns", "m")))
    assert api.deleted == [("ConfigMap", "m-canary-config")]
    cond = degraded(api.status_patches[-1])
    assert cond["status"] == "True" and cond["reason"] == "DeleteFailed"
    assert "Service 'm-canary'" in cond["message"] and "Deployment 'm-canary'" in cond["message"]
    assert 'cannot delete resource "deployments"' in cond["message"]


def test_deletes_that_succeed_leave_degraded_false():
    api = Api(refuse=set())
    reconciler = Reconciler(api=api, cache=FakeCache(SM, LEFTOVERS))
    asyncio.run(reconciler.reconcile(("ns", "m")))
    assert sorted(api.deleted) == [
        ("ConfigMap", "m-canary-config"),
        ("Deployment", "m-canary"),
        ("Service", "m-canary"),
    ]
    assert degraded(api.status_patches[-1])["status"] == "False"
    deleted = (
        "Deleted ConfigMap m-canary-config, Service m-canary and Deployment m-canary, "
        "which the spec no longer asks for"
    )
    assert [e for e in api.events if e[0] == "Deleted"] == [
        ("Deleted", deleted)
    ]  # one event, not one per child


def test_a_rejected_child_leaves_nothing_half_created():
    """A Deployment the API server refuses (a quota, a policy webhook): its ConfigMap and Service are not
    written either, and status names the Deployment with the server's message."""
    api = Api(refuse=set(), reject="Deployment")
    reconciler = Reconciler(api=api, cache=FakeCache(SM))
    asyncio.run(reconciler.reconcile(("ns", "m")))
    assert api.applied == []  # judged before anything was written
    assert ("Deployment", "m") in refs(api.dry_runs)
    ready = next(c for c in api.status_patches[-1]["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ApplyFailed" and "Deployment 'm'" in ready["message"]
    assert "exceeded quota" in ready["message"]


def test_children_that_are_accepted_are_all_applied():
    api = Api(refuse=set())
    asyncio.run(Reconciler(api=api, cache=FakeCache(SM)).reconcile(("ns", "m")))
    assert refs(api.applied) == [
        ("ConfigMap", "m-config"),
        ("Service", "m"),
        ("PodDisruptionBudget", "m"),
        ("Deployment", "m"),
    ]


class DiscoveryDown(Api):
    def serves(self, group_version, plural):
        raise ApiError(503, "the server is currently unable to handle the request", "ServiceUnavailable")


MONITORED = {
    **SM,
    "spec": {
        **SM["spec"],
        "monitoring": {"prometheus": {"enabled": True}, "serviceMonitor": {"enabled": True}},
    },
}
MONITOR = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "ServiceMonitor",
    "metadata": {"name": "m", "namespace": "ns"},
}


def test_a_failed_discovery_never_prunes_service_monitors():
    api = DiscoveryDown(refuse=set())
    asyncio.run(Reconciler(api=api, cache=FakeCache(MONITORED, [MONITOR])).reconcile(("ns", "m")))
    assert api.deleted == []
    assert ("ServiceMonitor", "m") not in refs(api.applied)


def test_a_failed_rediscovery_keeps_the_last_answer():
    api = Api(refuse=set())
    api.serves = lambda group_version, plural: True
    reconciler = Reconciler(api=api, cache=FakeCache(MONITORED, [MONITOR]))
    asyncio.run(reconciler.reconcile(("ns", "m")))
    reconciler._discovery = (reconciler._discovery[0] - 10_000, True)  # the answer is old: asked again

    def down(group_version, plural):
        raise ApiError(503, "unavailable", "ServiceUnavailable")

    api.serves = down
    api.applied.clear()
    asyncio.run(reconciler.reconcile(("ns", "m")))
    assert api.deleted == []


class Rewriting(Api):
    """An API server whose admission chain rewrites every image (a registry-rewriting webhook)."""

    def admit(self, obj):
        answer = super().admit(obj)
        for c in ((answer.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers", []):
            c["image"] = "mirror.internal/" + c["image"]
        answer.setdefault("status", {})["observedGeneration"] = 1
        return answer


def test_a_mutating_webhook_is_not_fought_but_hand_edits_are_reverted():
    api = Rewriting(refuse=set())
    cache = FakeCache(SM)
    reconciler = Reconciler(api=api, cache=cache)
    asyncio.run(reconciler.reconcile(("ns", "m")))
    applied = refs(api.applied)
    assert ("Deployment", "m") in applied
    # The watch brings back what the API server stored (rewritten image), and the controller's status.
    deployment = api.live[("Deployment", "m")]
    deployment["status"] = {"replicas": 2, "readyReplicas": 2}
    cache.objects = dict(api.live)
    asyncio.run(reconciler.reconcile(("ns", "m")))
    assert refs(api.applied) == applied  # nothing more: the rewrite is admission's, not drift
    # A hand edit of a field the operator sets is drift: applied again, once.
    deployment["spec"]["replicas"] = 5
    asyncio.run(reconciler.reconcile(("ns", "m")))
    assert refs(api.applied)[len(applied) :] == [("Deployment", "m")]
