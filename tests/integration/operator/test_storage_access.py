"""A claim whose access modes cannot serve the ServedModel is reported in status, with what to do."""

from __future__ import annotations

import pytest
from kubehelpers import condition, eventually, servedmodel
from modelvolume import hostpath_claim

pytestmark = pytest.mark.integration


def _claim(namespace: str, modes: list[str]) -> str:
    """A volume and a claim bound to it, with these access modes."""
    path = f"/srv/models/{namespace}/models"
    return hostpath_claim(namespace, path, reclaim="Delete", path_type=None, access_modes=modes)


def test_read_write_once_claim_with_several_replicas_is_reported(kube, operator, namespace):
    kube.apply(_claim(namespace, ["ReadWriteOnce"]))
    kube.apply(servedmodel("iris", namespace, replicas=2))
    sm = kube.wait_condition("servedmodel", "iris", namespace, "StorageConflict", status="True")
    conflict = condition(sm, "StorageConflict")
    assert conflict["reason"] == "ReadWriteOnceClaim"
    assert conflict["message"].startswith(
        "PersistentVolumeClaim 'models' is ReadWriteOnce: it attaches to one node at a time, and 2 model "
        "server pods use it"
    )
    assert "Use a ReadWriteMany claim" in conflict["message"]

    # One replica and no export: a ReadWriteOnce claim is fine, and the condition goes away.
    kube.apply(servedmodel("iris", namespace, replicas=1))
    eventually(
        lambda: condition(kube.get("servedmodel", "iris", namespace), "StorageConflict") == {},
        what="StorageConflict cleared",
    )


def test_read_only_claim_with_an_export_is_reported(kube, operator, namespace):
    kube.apply(_claim(namespace, ["ReadOnlyMany"]))
    kube.apply(servedmodel("iris", namespace, export={"source": {"path": "in/iris.keras"}}))
    conflict = eventually(
        lambda: condition(kube.get("servedmodel", "iris", namespace), "StorageConflict"),
        what="StorageConflict",
    )
    assert conflict["reason"] == "ReadOnlyClaimForExport"
    assert "the export Job cannot write" in conflict["message"]
