"""A canary on the real control plane: its own small Deployment behind the model's Service, then a
promotion (or a rollback) done by editing the ServedModel, which removes the canary's objects."""

from __future__ import annotations

import pytest
from kubehelpers import condition, eventually, pvc, servedmodel

pytestmark = pytest.mark.integration


def test_canary_then_promote(kube, operator, model_servers, namespace):
    kube.apply(pvc("models", namespace))
    base = {"replicas": 3, "versionLabels": {"stable": 3}}
    kube.apply(
        servedmodel(
            "m", namespace, versionPolicy={"specific": {"versions": [3]}}, canary={"version": 4}, **base
        )
    )

    canary = eventually(lambda: kube.get("deployment", "m-canary", namespace), what="canary Deployment")
    assert canary["spec"]["replicas"] == 1
    assert (
        "specific { versions: 4 }"
        in kube.get("configmap", "m-canary-config", namespace)["data"]["models.config"]
    )
    selector = kube.get("service", "m", namespace)["spec"]["selector"]
    assert "servedmodel.io/track" not in selector  # 1 of 4 pods: a quarter of the traffic goes to the canary
    assert kube.get("service", "m-canary", namespace)["spec"]["selector"]["servedmodel.io/track"] == "canary"

    def both_ready():
        sm = kube.get("servedmodel", "m", namespace)
        ok = condition(sm, "Ready").get("status") == "True"
        return ok and (sm["status"].get("canary") or {}).get("readyReplicas") == 1 and sm

    sm = eventually(both_ready, timeout=90, what="stable and canary ready")
    assert sm["status"]["canary"]["version"] == 4 and sm["status"]["readyReplicas"] == 3
    pods = kube.list("pods", namespace, "app.kubernetes.io/instance=m")
    tracks = sorted(
        p["metadata"]["labels"]["servedmodel.io/track"] for p in pods if p["status"].get("phase") == "Running"
    )
    assert tracks == ["canary", "stable", "stable", "stable"]

    # Promote: the policy serves 4, the canary section goes away, and so do its objects. From here on the
    # model server does not answer (see below).
    model_servers.down.add((namespace, "m"))
    kube.apply(
        servedmodel(
            "m",
            namespace,
            versionPolicy={"specific": {"versions": [4]}},
            replicas=3,
            versionLabels={"stable": 4},
        )
    )
    eventually(
        lambda: all(
            kube.get(k, n, namespace) is None
            for k, n in (
                ("deployment", "m-canary"),
                ("configmap", "m-canary-config"),
                ("service", "m-canary"),
                ("service", "m-stable"),
            )
        ),
        what="canary objects removed",
    )
    # Moving `stable` from 3 to 4 must wait until the stable pods' TF Serving reports 4 AVAILABLE (reference
    # 4.2). The model server does not answer now, so the operator serves both versions and holds the label
    # on 3, and says so; test_model_server_status shows the label moving once 4 is AVAILABLE.
    config = kube.get("configmap", "m-config", namespace)["data"]["models.config"]
    assert "specific { versions: 3 versions: 4 }" in config and 'key: "stable" value: 3' in config
    kube.wait_condition("servedmodel", "m", namespace, "Progressing", reason="LabelsPending")
    sm = kube.wait_until(
        "servedmodel", "m", namespace, lambda sm: "canary" not in sm["status"], what="canary gone from status"
    )
    assert kube.get("service", "m", namespace) is not None


def test_a_63_character_name_with_a_canary_gets_every_child(kube, operator, namespace):
    """The longest name the CRD accepts: the canary's and the tracks' Services are shortened (name prefix,
    hash, suffix) and accepted by the API server; nothing is left half-created."""
    name = "a" * 56 + "-model1"
    assert len(name) == 63
    kube.apply(pvc("models", namespace))
    kube.apply(
        servedmodel(name, namespace, versionPolicy={"specific": {"versions": [3]}}, canary={"version": 4})
    )

    def served():
        sm = kube.get("servedmodel", name, namespace)
        ready = condition(sm, "Ready").get("status") == "True"
        return ready and (sm["status"].get("canary") or {}).get("readyReplicas") == 1 and sm

    sm = eventually(served, timeout=90, what="stable and canary ready")
    services = {s["metadata"]["name"] for s in kube.list("services", namespace)}
    assert name in services and len(services) == 3
    assert all(len(s) <= 63 for s in services)
    canary_service = sm["status"]["canary"]["service"]
    assert canary_service in services and canary_service.endswith("-canary")
    assert any(s.endswith("-stable") for s in services)
    assert kube.get("deployment", name, namespace) is not None
