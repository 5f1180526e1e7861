"""A ServedModel the API server no longer has, while the cache still holds it (kopf stops watching a namespace
as soon as it terminates, so the deletions of its ServedModels never reach the cache): reconciled once, then
forgotten, instead of having every child apply refused again at each resync, for good."""

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


class GoneNamespace(FakeApi):
    """The API server after namespace ns was deleted: nothing can be created in it, and the ServedModel
    (or, with `status_answer`, the whole resource) is not found."""

    def __init__(self, status_answer: str = 'servedmodels.servedmodel.io "m" not found') -> None:
        super().__init__()
        self.status_answer = status_answer

    def admit(self, obj):
        raise ApiError(404, 'namespaces "ns" not found', "NotFound")

    def patch_status(self, group, version, namespace, name, patch):
        super().patch_status(group, version, namespace, name, patch)
        raise ApiError(404, self.status_answer, "NotFound")


def test_a_served_model_the_api_server_no_longer_has_is_reconciled_once_then_forgotten():
    api = GoneNamespace()
    reconciler = Reconciler(api=api, cache=FakeCache(SM))
    asyncio.run(reconciler.reconcile(KEY))  # every child refused (ApplyFailed), then the 404 that tells
    assert api.dry_runs and len(api.status_patches) == 1
    calls = (len(api.dry_runs), len(api.applied), len(api.status_patches), len(api.events))
    for _ in range(3):  # the resyncs that follow
        asyncio.run(reconciler.reconcile(KEY))
    assert (len(api.dry_runs), len(api.applied), len(api.status_patches), len(api.events)) == calls


def test_a_new_object_under_the_same_name_is_reconciled():
    api = GoneNamespace()
    cache = FakeCache(SM)
    reconciler = Reconciler(api=api, cache=cache)
    asyncio.run(reconciler.reconcile(KEY))
    asyncio.run(reconciler.reconcile(KEY))
    assert len(api.status_patches) == 1

    cache.sm = copy.deepcopy(SM)
    cache.sm["metadata"]["uid"] = "u2"  # the namespace and the ServedModel were created again
    asyncio.run(reconciler.reconcile(KEY))
    assert len(api.status_patches) == 2


def test_a_404_for_the_whole_resource_forgets_nothing():
    """While the CRD is being replaced the API server answers 404 for every ServedModel: not a deletion."""
    api = GoneNamespace(status_answer="the server could not find the requested resource")
    reconciler = Reconciler(api=api, cache=FakeCache(SM))
    for _ in range(3):
        asyncio.run(reconciler.reconcile(KEY))
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
