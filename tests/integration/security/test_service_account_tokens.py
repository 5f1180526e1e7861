"""Model server and export pods carry no ServiceAccount token unless the ServedModel asks for one.

The API server's ServiceAccount admission adds a projected token volume to every pod that does not opt out;
the control (a ServedModel that asks for a token) shows it does so here, so its absence means the opt-out.
"""

from __future__ import annotations

import pytest
from kubehelpers import eventually, pvc, servedmodel

pytestmark = pytest.mark.integration


def token_volumes(pod: dict) -> list[str]:
    return [
        v["name"]
        for v in pod["spec"].get("volumes") or []
        if any("serviceAccountToken" in s for s in (v.get("projected") or {}).get("sources") or [])
    ]


def pods(kube, namespace: str, selector: str, count: int) -> list[dict]:
    def found():
        items = kube.list("pods", namespace, selector)
        return items if len(items) >= count else None

    return eventually(found, timeout=90, what=f"{count} pod(s) {selector}")


def test_no_token_by_default_and_one_when_asked(kube, operator, namespace):
    kube.apply(pvc("models", namespace))
    kube.kubectl("-n", namespace, "create", "serviceaccount", "reader")
    kube.apply(servedmodel("plain", namespace, replicas=2, export={"source": {"path": "in/plain.keras"}}))
    kube.apply(
        servedmodel(
            "asks",
            namespace,
            serviceAccountName="reader",
            automountServiceAccountToken=True,
            export={"source": {"path": "in/asks.keras"}},
        )
    )

    servers = pods(
        kube, namespace, "app.kubernetes.io/instance=plain,app.kubernetes.io/component=model-server", 2
    )
    exports = pods(
        kube, namespace, "app.kubernetes.io/instance=plain,app.kubernetes.io/component=exporter", 1
    )
    for pod in servers + exports:
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert pod["spec"]["serviceAccountName"] == "default"
        assert token_volumes(pod) == [], pod["metadata"]["name"]
        for c in pod["spec"]["containers"]:
            mounts = [m["mountPath"] for m in c.get("volumeMounts") or []]
            assert "/var/run/secrets/kubernetes.io/serviceaccount" not in mounts

    asked = pods(kube, namespace, "app.kubernetes.io/instance=asks", 2)  # a model server and an export pod
    assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in asked} == {
        "model-server",
        "exporter",
    }
    for pod in asked:
        assert pod["spec"]["serviceAccountName"] == "reader"
        assert len(token_volumes(pod)) == 1, pod["metadata"]["name"]
