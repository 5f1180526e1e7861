"""The watches are narrowed on the API server's side: only the operator's own children, and one CRD."""

from __future__ import annotations

import kopf
from kopf._cogs.structs.references import Resource
from servedmodel_operator.handlers import _plain
from servedmodel_operator.watches import CHILD_RESOURCES, narrow


def resource(group: str, version: str, plural: str, kind: str = "X") -> Resource:
    return Resource(group=group, version=version, plural=plural, kind=kind, namespaced=True, preferred=True)


def test_every_child_watch_selects_the_operators_label_on_the_server():
    settings = kopf.OperatorSettings()
    narrow(settings.watching)
    for group, version, plural in CHILD_RESOURCES.values():
        # What kopf itself puts into the list and watch requests' labelSelector.
        assert settings.watching.label_selectors.collect(resource(group, version, plural)) == [
            "app.kubernetes.io/managed-by=servedmodel-operator"
        ], plural
    # ServedModels and PVCs (the users' own) are not filtered; nor are other resources of a child's group.
    assert (
        settings.watching.label_selectors.collect(resource("servedmodel.io", "v1alpha1", "servedmodels"))
        == []
    )
    assert settings.watching.label_selectors.collect(resource("", "v1", "persistentvolumeclaims")) == []
    assert settings.watching.label_selectors.collect(resource("", "v1", "secrets")) == []
    assert settings.watching.label_selectors.collect(resource("apps", "v1", "statefulsets")) == []


def test_the_crd_watch_sees_only_the_service_monitor_crd():
    settings = kopf.OperatorSettings()
    narrow(settings.watching)
    crds = resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition")
    assert settings.watching.field_selectors.collect(crds) == [
        "metadata.name=servicemonitors.monitoring.coreos.com"
    ]


def test_cached_objects_carry_no_managed_fields():
    raw = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "m-config",
            "namespace": "ns",
            "labels": {"app.kubernetes.io/managed-by": "servedmodel-operator"},
            "managedFields": [{"manager": "servedmodel-operator", "fieldsV1": {"f:data": {}}}],
        },
        "data": {"models.config": "x"},
    }
    cached = _plain(kopf.Body(raw))
    assert "managedFields" not in cached["metadata"]
    assert cached["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "servedmodel-operator"}
    assert cached["data"] == {"models.config": "x"}
