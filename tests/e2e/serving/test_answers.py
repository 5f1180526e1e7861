"""Answers are right: through the model's Service, by ClusterIP from the node's network and by DNS name
from a client pod, `{"instances": ...}` to `:predict` returns what Keras returns for the same inputs, by
version and by label, and over gRPC. The pods are real and restricted: the server reads the published
files and cannot write the model volume."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from kubehelpers import Kube, condition, eventually
from servinghelpers import (
    INPUTS,
    INSTANCES,
    NAMESPACE,
    SERVER_UID,
    assert_close,
    cluster_ip,
    in_netns,
    pods,
    predict,
    servedmodel,
    versions,
    wait_ready,
)

NAME = "iris"


@pytest.fixture(scope="module")
def iris(skube: Kube, stand_in: str, serving_operator, keras_models, volume) -> Iterator[dict]:
    """Versions 1 (model a) and 2 (model b) published, both served, labels stable -> 1 and canary -> 2."""
    volume.publish_copy(NAME, "a", 1)
    volume.publish_copy(NAME, "b", 2)
    skube.apply(
        servedmodel(
            NAME,
            NAMESPACE,
            stand_in,
            versionPolicy={"specific": {"versions": [1, 2]}},
            versionLabels={"stable": 1, "canary": 2},
        )
    )
    sm = wait_ready(skube, NAMESPACE, NAME)
    yield sm
    skube.kubectl("delete", "servedmodel", NAME, "-n", NAMESPACE, "--wait=false", check=False)


def test_predictions_through_the_cluster_ip_equal_keras(iris, skube, node, keras_models) -> None:
    assert versions(iris) == [{"version": 2, "state": "AVAILABLE"}, {"version": 1, "state": "AVAILABLE"}]
    ip = cluster_ip(skube, NAMESPACE, NAME)
    base = f"http://{ip}:8501/v1/models/{NAME}"
    a, b = keras_models.predict("a", INPUTS), keras_models.predict("b", INPUTS)
    assert not np.allclose(a, b)  # the two versions answer differently, so each check below means something
    assert_close(predict(node, base), b, "no version: the newest served")
    assert_close(predict(node, base, "/versions/1"), a, "/versions/1")
    assert_close(predict(node, base, "/versions/2"), b, "/versions/2")
    assert_close(predict(node, base, "/labels/stable"), a, "/labels/stable")
    assert_close(predict(node, base, "/labels/canary"), b, "/labels/canary")
    # The endpoints the status advertises are the Service's.
    assert iris["status"]["endpoints"]["rest"] == f"http://{NAME}.{NAMESPACE}.svc:8501/v1/models/{NAME}"


def test_predictions_over_grpc_equal_keras(iris, skube, node, keras_models) -> None:
    address = f"{cluster_ip(skube, NAMESPACE, NAME)}:8500"
    by_version = in_netns(node, "grpc", address, NAME, json.dumps(INPUTS), "--version", "1")
    assert by_version["model_spec"] == {"name": NAME, "version": 1}
    [output] = by_version["outputs"].values()
    assert_close(np.asarray(output), keras_models.predict("a", INPUTS), "gRPC version 1")
    by_label = in_netns(node, "grpc", address, NAME, json.dumps(INPUTS), "--label", "canary")
    assert by_label["model_spec"] == {"name": NAME, "version": 2}
    [output] = by_label["outputs"].values()
    assert_close(np.asarray(output), keras_models.predict("b", INPUTS), "gRPC label canary")


def test_predictions_by_dns_name_from_a_client_pod(iris, skube, node, stand_in, keras_models) -> None:
    """A restricted pod in the namespace resolves `<model>.<namespace>.svc` with the cluster DNS."""
    url = f"http://{NAME}.{NAMESPACE}.svc:8501/v1/models/{NAME}/versions/1:predict"
    script = (
        "import json, sys, urllib.request as u\n"
        f"r = u.Request({url!r}, data=sys.argv[1].encode(), headers={{'Content-Type': 'application/json'}})\n"
        "print(json.dumps(json.load(u.urlopen(r, timeout=30))))\n"
    )
    skube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "namespace": NAMESPACE},
            "spec": {
                **node.pod_placement(),
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [
                    {
                        "name": "client",
                        "image": stand_in,
                        "imagePullPolicy": "Never",
                        "command": ["python3", "-c", script, INSTANCES],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
    )
    try:

        def finished() -> dict | None:
            pod = skube.get("pod", "client", NAMESPACE)
            return pod if pod and pod["status"].get("phase") in ("Succeeded", "Failed") else None

        pod = eventually(finished, timeout=120, what="the client pod to finish")
        out = skube.kubectl("logs", "-n", NAMESPACE, "client").stdout
        assert pod["status"]["phase"] == "Succeeded", out
        got = np.asarray(json.loads(out)["predictions"])
        assert_close(got, keras_models.predict("a", INPUTS), "by DNS name from a pod")
    finally:
        skube.kubectl("delete", "pod", "client", "-n", NAMESPACE, "--wait=false", check=False)


def test_pods_run_restricted_and_cannot_write_the_model_volume(iris, skube, node, volume) -> None:
    ns = json.loads(skube.kubectl("get", "namespace", NAMESPACE, "-o", "json").stdout)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    [pod] = pods(skube, NAMESPACE, NAME)
    name = pod["metadata"]["name"]
    assert pod["spec"]["nodeName"] == node.name
    assert pod["spec"]["securityContext"]["runAsUser"] == SERVER_UID

    def sh(command: str):
        return skube.kubectl("exec", "-n", NAMESPACE, name, "--", "sh", "-c", command, check=False)

    # The server process (PID 1) runs as the rendered user, not root, without capabilities.
    status = sh("cat /proc/1/status").stdout
    assert f"Uid:\t{SERVER_UID}\t{SERVER_UID}\t{SERVER_UID}\t{SERVER_UID}" in status, status
    assert "CapEff:\t0000000000000000" in status, status
    # It read the published files (both versions are AVAILABLE above): they are world-readable on the volume.
    listing = sh(f"ls -ln /models/{NAME}/1").stdout
    assert "saved_model.pb" in listing and "-rw-r--r--" in listing, listing
    # Writing the model volume or the root filesystem fails; only /tmp (an emptyDir) is writable.
    for target in (f"/models/{NAME}/1/intruder", f"/models/{NAME}/9", "/usr/intruder"):
        proc = sh(f"echo x > {target} || mkdir {target}")
        assert proc.returncode != 0 and "Read-only file system" in proc.stderr, (target, proc.stderr)
    assert volume.version_folders(NAME) == ["1", "2"]
    assert not (volume.root / NAME / "1" / "intruder").exists()
    assert sh("echo x > /tmp/scratch && cat /tmp/scratch").stdout == "x\n"

    # The namespace refuses a pod that asks for root: the policy is enforced, not just labelled.
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root-pod", "namespace": NAMESPACE},
        "spec": {
            **node.pod_placement(),
            "containers": [{"name": "c", "image": node.test_image, "securityContext": {"runAsUser": 0}}],
        },
    }
    refused = skube.try_apply(privileged)
    assert refused.returncode != 0 and 'violates PodSecurity "restricted:latest"' in refused.stderr
    # ... while the model server's own pod was admitted as rendered.
    assert condition(pod, "Ready")["status"] == "True"
