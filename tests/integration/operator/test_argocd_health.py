"""The Argo CD health check of dist/gitops/ on statuses the real operator wrote on the real control plane.

The patch is first merged into an `argocd-cm` ConfigMap with `kubectl patch --patch-file`, as the README
tells users to, and the Lua is read back from it; then each ServedModel is driven into a state by the
operator and the Lua (run by a Lua 5.1 interpreter, as Argo CD's is) must say what a reader expects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import yaml
from argocdhealth import HEALTH_KEY, PATCH, health
from kubehelpers import condition, create_under_an_older_crd, eventually, pvc, servedmodel
from localcluster import free_port
from tfservinghelpers import model_server_double, publish

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def script(kube) -> Iterator[str]:
    """The health check as Argo CD would read it from its argocd-cm after the documented patch."""
    ns = f"argocd-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", ns)
    try:
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "argocd-cm", "namespace": ns},
                "data": {"url": "https://argocd.example.com", "timeout.reconciliation": "180s"},
            }
        )
        kube.kubectl("-n", ns, "patch", "configmap", "argocd-cm", "--patch-file", str(PATCH))
        data = kube.get("configmap", "argocd-cm", ns)["data"]
        assert data["url"] == "https://argocd.example.com", "the patch must keep Argo CD's own settings"
        assert data[HEALTH_KEY] == yaml.safe_load(PATCH.read_text())["data"][HEALTH_KEY]
        yield data[HEALTH_KEY]
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def get(kube, namespace: str, name: str) -> dict:
    return kube.get("servedmodel", name, namespace) or {}


def test_no_status_then_ready_then_a_new_generation(kube, operator, namespace, script):
    kube.apply(pvc("models", namespace))
    created = json.loads(
        kube.kubectl(
            "create", "-f", "-", "-o", "json", input=yaml.safe_dump(servedmodel("resnet", namespace))
        ).stdout
    )
    assert "status" not in created  # what the API server answers before the operator has seen it
    assert health(script, created) == (
        "Progressing",
        "Waiting for the servedmodel-operator to report status",
    )

    sm = kube.wait_condition("servedmodel", "resnet", namespace, "Ready", reason="ModelServing", timeout=90)
    assert health(script, sm) == (
        "Healthy",
        "ModelServing: Serving versions 1.",
    )

    # The object as the API server answers the edit: generation 2, the status still about generation 1.
    edited = json.loads(
        kube.kubectl(
            "apply",
            "-f",
            "-",
            "-o",
            "json",
            input=yaml.safe_dump(servedmodel("resnet", namespace, replicas=2)),
        ).stdout
    )
    assert edited["metadata"]["generation"] == 2 and edited["status"]["observedGeneration"] == 1
    assert health(script, edited) == (
        "Progressing",
        "Waiting for the servedmodel-operator to observe generation 2",
    )


def test_rolling_out_and_scaled_to_zero(kube, operator, namespace, script):
    kube.apply(pvc("models", namespace))
    # No node has this label: the pods stay Pending, so the rollout never completes.
    kube.apply(servedmodel("stuck", namespace, nodeSelector={"servedmodel.io/test-no-such-node": "x"}))
    kube.apply(servedmodel("idle", namespace, replicas=0))

    # The pod is created (updated) but never scheduled, so never ready: the rollout settles there.
    sm = kube.wait_condition(
        "servedmodel",
        "stuck",
        namespace,
        "Progressing",
        message="1/1 replicas updated, 0 ready.",
        what="rolling out with the pod pending",
    )
    assert condition(sm, "Ready")["reason"] == "ReplicasNotReady"
    assert health(script, sm) == ("Progressing", "RollingOut: 1/1 replicas updated, 0 ready.")

    # Ready says ScaledToZero at once; Progressing waits for the Deployment controller to observe it.
    def scaled_to_zero(sm: dict) -> bool:
        return (
            condition(sm, "Ready").get("reason") == "ScaledToZero"
            and condition(sm, "Progressing").get("reason") == "RolloutComplete"
        )

    sm = kube.wait_until("servedmodel", "idle", namespace, scaled_to_zero, "scaled to zero, rolled out", 60)
    assert health(script, sm) == (
        "Healthy",
        "ScaledToZero: spec.replicas is 0: no model server is running.",
    )


def test_invalid_spec(kube, operator, namespace, script):
    """A spec stored under an older CRD: the API server keeps it, the operator refuses it (InvalidSpec)."""
    kube.apply(pvc("models", namespace))
    # The old CRD did not yet check that the name is a DNS label, which the model's Service needs. Whether the
    # operator sees it before or after the current CRD is back, it can write its status.
    create_under_an_older_crd(kube, servedmodel("bad.name", namespace))
    sm = kube.wait_condition("servedmodel", "bad.name", namespace, "Ready", reason="InvalidSpec")
    status, message = health(script, sm)
    assert status == "Degraded"
    assert message.startswith(
        "InvalidSpec: the ServedModel's name names its Service, so it must be a DNS label"
    )


def test_storage_missing(kube, operator, namespace, script):
    kube.apply(servedmodel("nopvc", namespace))
    sm = kube.wait_condition("servedmodel", "nopvc", namespace, "Ready", reason="StorageNotFound")
    assert health(script, sm) == (
        "Degraded",
        f"StorageNotFound: PersistentVolumeClaim 'models' does not exist in namespace '{namespace}'; "
        "create it (the model server mounts it at /models) and the model will be served.",
    )


def test_export_failed_while_serving(kube, operator, namespace, script):
    kube.apply(pvc("models", namespace))
    # Requests above limits: the API server refuses the export Job; the model itself serves on.
    export = {
        "source": {"path": "in/a.keras"},
        "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
    }
    kube.apply(servedmodel("exp", namespace, export=export))

    def failed_while_ready(sm: dict) -> bool:
        return (
            condition(sm, "Exported").get("reason") == "ExportFailed"
            and condition(sm, "Ready").get("status") == "True"
        )

    sm = kube.wait_until("servedmodel", "exp", namespace, failed_while_ready, "ExportFailed while Ready", 90)
    status, message = health(script, sm)
    assert status == "Degraded"
    assert message.startswith("ExportFailed: The API server rejected the export Job:")
    assert "must be less than or equal to cpu limit" in message


def test_version_failed_to_load_while_serving(kube, operator, namespace, script, tmp_path):
    volume, config = tmp_path / "volume", tmp_path / "models.config"
    publish(volume, "vision", 1)
    rest, grpc = free_port(), free_port()
    kube.apply(pvc("models", namespace))
    kube.apply(servedmodel("vision", namespace, ports={"grpc": grpc, "rest": rest}))
    with model_server_double(kube, namespace, "vision", volume, config, grpc, rest):
        eventually(
            lambda: (
                health(script, get(kube, namespace, "vision"))
                == ("Healthy", "ModelServing: Serving versions 1.")
            ),
            timeout=60,
            what="Healthy on version 1",
        )
        publish(volume, "vision", 2, complete=False)  # no saved_model.pb: the load fails
        sm = kube.wait_condition("servedmodel", "vision", namespace, "Degraded", reason="VersionLoadFailed")
        assert condition(sm, "Ready")["status"] == "True"  # version 1 still serves
        status, message = health(script, sm)
        assert status == "Degraded"
        assert message.startswith("VersionLoadFailed: version 2 failed to load: ")
        assert "Could not find SavedModel" in message


def test_storage_conflict_while_serving(kube, operator, namespace, script):
    # A ReadWriteOnce claim for two model servers: pods on another node could never mount it.
    kube.apply(pvc("models", namespace).replace("ReadWriteMany", "ReadWriteOnce"))
    kube.apply(servedmodel("rwo", namespace, replicas=2))
    sm = kube.wait_condition("servedmodel", "rwo", namespace, "StorageConflict", status="True")
    status, message = health(script, sm)
    assert status == "Degraded"
    assert message.startswith(
        "ReadWriteOnceClaim: PersistentVolumeClaim 'models' is ReadWriteOnce: "
        "it attaches to one node at a time"
    )
