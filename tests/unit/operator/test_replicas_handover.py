"""Which apply hands spec.replicas over to the autoscaler first (replicas_handover.py), on plain objects."""

from __future__ import annotations

from servedmodel_operator.replicas_handover import handover


def deployment(replicas=None, managed=None):
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "m", "namespace": "ns"},
        "spec": {"template": {}},
    }
    if replicas is not None:
        obj["spec"]["replicas"] = replicas
    if managed is not None:
        obj["metadata"]["managedFields"] = managed
    return obj


def entry(manager, operation, fields):
    return {"manager": manager, "operation": operation, "fieldsV1": {"f:spec": fields}}


OURS_WITH_REPLICAS = [entry("servedmodel-operator", "Apply", {"f:replicas": {}, "f:template": {}})]
OURS_WITHOUT = [
    entry("servedmodel-operator", "Apply", {"f:template": {}}),
    entry("kube-controller-manager", "Update", {"f:replicas": {}}),
]


def test_autoscaling_turned_on_hands_the_live_replicas_over_first():
    held = handover(deployment(), deployment(3, OURS_WITH_REPLICAS))
    assert held == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "m", "namespace": "ns"},
        "spec": {"replicas": 3},
    }


def test_nothing_to_hand_over():
    assert handover(deployment(), deployment(4, OURS_WITHOUT)) is None  # the HPA owns them already
    assert handover(deployment(2), deployment(3, OURS_WITH_REPLICAS)) is None  # still a fixed count
    assert handover(deployment(), None) is None  # created autoscaled: nothing runs yet
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m"}, "spec": {}}
    assert handover(service, service) is None


def test_without_managed_fields_in_the_cache_it_hands_over_anyway():
    """A cache that drops managedFields cannot tell; a hand-over that is not needed conflicts (409) or is
    a no-op, so doing it is safe."""
    assert handover(deployment(), deployment(5))["spec"] == {"replicas": 5}
