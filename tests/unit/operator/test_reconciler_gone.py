"""A ServedModel the API server no longer has, while the cache still holds it (kopf stops watching a namespace
as soon as its termination starts, so deletions of its content still on their way never reach the cache):
reconciled once, then forgotten, instead of having its writes refused again at every resync, for good."""

from __future__ import annotations

import asyncio
import copy

from operatorfakes import FakeApi, FakeCache
from servedmodel_operator.kube import ApiError
from servedmodel_operator.reconciler import Reconciler

SM = {
    "apiVersion": "servedmodel.io/v1alpha1",
    "kind": "ServedModel",
    "metadata": {"name": "m", "namespace": "ns", "uid": "u1", "generation": 1},
    "spec": {"storage": {"persistentVolumeClaim": {"claimName": "models"}}},
}
KEY = ("ns", "m")


class GoneServedModel(FakeApi):
    """The namespace is there, the ServedModel is not (or, with `answer`, its whole resource is not)."""

    def __init__(self, answer: str = 'servedmodels.servedmodel.io "m" not found') -> None:
        super().__init__()
        self.answer = answer

    def patch_status(self, group, version, namespace, name, patch):
        super().patch_status(group, version, namespace, name, patch)
        raise ApiError(404, self.answer, "NotFound")


class GoneNamespace(GoneServedModel):
    """Namespace ns was deleted: nothing can be written in it."""

    def admit(self, obj):
        raise ApiError(404, 'namespaces "ns" not found', "NotFound")


def calls(api: FakeApi) -> tuple[int, ...]:
    return len(api.dry_runs), len(api.applied), len(api.status_patches), len(api.events)


def resyncs(reconciler: Reconciler, times: int = 3) -> None:
    for _ in range(times):
        asyncio.run(reconciler.reconcile(KEY))


def test_a_served_model_the_api_server_no_longer_has_is_reconciled_once_then_forgotten():
    api = GoneServedModel()
    reconciler = Reconciler(api=api, cache=FakeCache(SM))
    resyncs(reconciler, 1)  # children applied from the stale copy, then the status write's 404 tells
    assert api.applied and len(api.status_patches) == 1
    before = calls(api)
    resyncs(reconciler)
    assert calls(api) == before


def test_a_served_model_whose_namespace_is_gone_is_forgotten_at_the_first_refusal():
    api = GoneNamespace()
    reconciler = Reconciler(api=api, cache=FakeCache(SM))
    resyncs(reconciler, 1)
    assert api.dry_runs or api.applied
    assert api.status_patches == [] and api.events == []  # no ApplyFailed to write where nothing exists
    before = calls(api)
    resyncs(reconciler)
    assert calls(api) == before


def test_a_new_object_under_the_same_name_is_reconciled():
    api = GoneServedModel()
    cache = FakeCache(SM)
    reconciler = Reconciler(api=api, cache=cache)
    resyncs(reconciler, 2)
    assert len(api.status_patches) == 1

    cache.sm = copy.deepcopy(SM)
    cache.sm["metadata"]["uid"] = "u2"  # the namespace and the ServedModel were created again
    resyncs(reconciler, 1)
    assert len(api.status_patches) == 2


def test_a_404_for_the_whole_resource_forgets_nothing():
    """While the CRD is being replaced the API server answers 404 for every ServedModel: not a deletion."""
    api = GoneServedModel(answer="the server could not find the requested resource")
    reconciler = Reconciler(api=api, cache=FakeCache(SM))
    resyncs(reconciler)
    assert len(api.status_patches) == 3


class TerminatingNamespace(FakeApi):
    def admit(self, obj):
        name = obj["metadata"]["name"]
        raise ApiError(
            403,
            f'{obj["kind"].lower()}s "{name}" is forbidden: unable to create new content in namespace ns '
            "because it is being terminated",
            "Forbidden",
        )


def test_a_namespace_being_deleted_is_neither_reported_nor_retried():
    """Its ServedModels go with it: no ApplyFailed status, no Warning event, no retry with backoff."""
    api = TerminatingNamespace()
    reconciler = Reconciler(api=api, cache=FakeCache(SM))
    asyncio.run(reconciler.reconcile(KEY))  # raising Retry would fail the test
    assert api.dry_runs or api.applied
    assert api.status_patches == [] and api.events == []
