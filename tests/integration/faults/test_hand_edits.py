"""Owned objects edited or deleted by hand, beyond tests/integration/operator/test_reconcile.py (which
covers a replicas edit, a garbage ConfigMap and deleting each child alone): everything deleted at once, a
forged status, and the foreign edits users really make, which must be kept without a fight."""

from __future__ import annotations

import json
import time

import pytest
from faulthelpers import assert_converged, start_serving
from kubehelpers import condition, eventually
from localcluster import OPERATOR_USER

pytestmark = pytest.mark.integration


def _writes(cluster, namespace: str, since: float) -> list[tuple[str, str, str]]:
    return [
        (
            w["verb"],
            (w.get("objectRef") or {}).get("resource", ""),
            (w.get("objectRef") or {}).get("name", ""),
        )
        for w in cluster.audited_writes(OPERATOR_USER, since)
        if (w.get("objectRef") or {}).get("namespace") == namespace
    ]


def test_all_children_deleted_at_once_and_forged_status_are_restored(fkube, fnamespace, spawn_operator):
    ns = fnamespace
    start_serving(spawn_operator, fkube, ns, "x", operator="drift")
    uids = {
        k: fkube.get(k, n, ns)["metadata"]["uid"]
        for k, n in (("deployment", "x"), ("service", "x"), ("configmap", "x-config"))
    }
    fkube.kubectl("-n", ns, "delete", "deployment/x", "service/x", "configmap/x-config", "--wait=false")

    def recreated():
        for kind, name in (("deployment", "x"), ("service", "x"), ("configmap", "x-config")):
            obj = fkube.get(kind, name, ns)
            assert obj and obj["metadata"]["uid"] != uids[kind], f"{kind} not recreated"
        return assert_converged(fkube, ns)

    eventually(recreated, timeout=60, what="all three children recreated")

    # Someone writes a false status: the operator rebuilds it from what it observes.
    forged = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "Forged",
                    "message": "x",
                    "lastTransitionTime": "2020-01-01T00:00:00Z",
                }
            ],
            "readyReplicas": 42,
        }
    }
    fkube.kubectl(
        "-n",
        ns,
        "patch",
        "servedmodel",
        "x",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(forged),
    )
    eventually(
        lambda: (
            condition(fkube.get("servedmodel", "x", ns), "Ready").get("reason") == "ModelServing"
            and fkube.get("servedmodel", "x", ns)["status"]["readyReplicas"] == 1
        ),
        timeout=60,
        what="status rebuilt",
    )


def test_rollout_restart_and_foreign_annotations_are_kept_without_a_fight(
    fcluster, fkube, fnamespace, spawn_operator
):
    """`kubectl rollout restart`, a user's annotation on the Service and a label on the ConfigMap are
    foreign fields: kept, and no write at all follows them (the operator's resync runs every 4 s)."""
    ns = fnamespace
    op = start_serving(spawn_operator, fkube, ns, "y", operator="foreign")
    fkube.kubectl("-n", ns, "rollout", "restart", "deployment/y")
    fkube.kubectl("-n", ns, "annotate", "service/y", "example.com/lb=internal")
    fkube.kubectl("-n", ns, "label", "configmap/y-config", "team=vision")
    time.sleep(2)
    since = time.time()
    log_before = len(op.text())
    time.sleep(10)  # two resyncs or more
    assert op.text()[log_before:].count(f"reconciled {ns}/y: up to date") >= 2, "no resync in the window"
    dep = fkube.get("deployment", "y", ns)
    assert "kubectl.kubernetes.io/restartedAt" in dep["spec"]["template"]["metadata"]["annotations"]
    assert fkube.get("service", "y", ns)["metadata"]["annotations"]["example.com/lb"] == "internal"
    assert fkube.get("configmap", "y-config", ns)["metadata"]["labels"]["team"] == "vision"
    assert _writes(fcluster, ns, since) == []
    assert "DriftCorrected" not in [e["reason"] for e in fkube.events(ns, "y")]


def test_a_foreign_sidecar_container_is_kept_without_a_fight(fcluster, fkube, fnamespace, spawn_operator):
    ns = fnamespace
    start_serving(spawn_operator, fkube, ns, "z", operator="sidecar")
    sidecar = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "log-shipper",
                            "image": "busybox:1.36",
                            "securityContext": {"allowPrivilegeEscalation": False},
                        }
                    ]
                }
            }
        }
    }
    fkube.kubectl("-n", ns, "patch", "deployment", "z", "--type=strategic", "-p", json.dumps(sidecar))
    time.sleep(3)
    since = time.time()
    time.sleep(10)
    containers = [
        c["name"] for c in fkube.get("deployment", "z", ns)["spec"]["template"]["spec"]["containers"]
    ]
    assert "log-shipper" in containers and "tensorflow-serving" in containers
    assert _writes(fcluster, ns, since) == []
