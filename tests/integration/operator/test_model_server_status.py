"""Status from the model server itself: the operator polls TF Serving's REST status API.

TF Serving cannot run here, so each test runs the TF Serving test double (tools/tfserving_double, which
follows our TF Serving reference) on loopback, and the operator reaches it on the REST port the
ServedModel names. The test plays the kubelet's part of syncing the operator's ConfigMap into the
server's config file, with /models (the volume mount) mapped to a temporary folder.
"""

from __future__ import annotations

import pytest
from kubehelpers import condition, eventually, pvc, servedmodel
from localcluster import free_port
from tfservinghelpers import model_server_double, publish

pytestmark = pytest.mark.integration


def test_versions_and_load_failures_come_from_the_model_server(kube, operator, namespace, tmp_path):
    volume, config = tmp_path / "volume", tmp_path / "models.config"
    publish(volume, "vision", 1)
    rest, grpc = free_port(), free_port()
    kube.apply(pvc("models", namespace))
    kube.apply(servedmodel("vision", namespace, ports={"grpc": grpc, "rest": rest}))

    with model_server_double(kube, namespace, "vision", volume, config, grpc, rest):
        sm = kube.wait_until(
            "servedmodel",
            "vision",
            namespace,
            lambda sm: (sm.get("status") or {}).get("versions") == [{"version": 1, "state": "AVAILABLE"}],
            what="version 1",
        )
        ready = condition(sm, "Ready")
        assert ready["status"] == "True" and ready["reason"] == "ModelServing"
        assert "Serving versions 1" in ready["message"]

        # A broken new version: TF Serving keeps serving 1 and reports the failed load.
        publish(volume, "vision", 2, complete=False)
        sm = kube.wait_condition("servedmodel", "vision", namespace, "Degraded", reason="VersionLoadFailed")
        assert "version 2 failed to load" in condition(sm, "Degraded")["message"]
        assert "Could not find SavedModel" in condition(sm, "Degraded")["message"]
        assert condition(sm, "Ready")["status"] == "True"
        assert {v["version"]: v["state"] for v in sm["status"]["versions"]} == {2: "END", 1: "AVAILABLE"}
        assert "error" in sm["status"]["versions"][0]

        # Asking for a version that is not on disk: not Ready, and the message says which.
        kube.apply(
            servedmodel(
                "vision",
                namespace,
                ports={"grpc": grpc, "rest": rest},
                versionPolicy={"specific": {"versions": [1, 3]}},
            )
        )
        sm = kube.wait_condition("servedmodel", "vision", namespace, "Ready", reason="VersionsNotAvailable")
        assert "3 is" in condition(sm, "Ready")["message"]

        publish(volume, "vision", 3)
        kube.wait_condition(
            "servedmodel", "vision", namespace, "Ready", status="True", what="Ready once 3 loads"
        )


def test_a_moved_label_waits_until_its_version_is_available(kube, operator, namespace, tmp_path):
    """Moving stable from 3 to 4 in the same edit that asks for 4: TF Serving would refuse the whole
    config (reference 4.2), so the operator first serves 3 and 4 with stable on 3, then moves it."""
    volume, config = tmp_path / "volume", tmp_path / "models.config"
    publish(volume, "ranker", 3)
    rest, grpc = free_port(), free_port()
    kube.apply(pvc("models", namespace))
    spec = {"ports": {"grpc": grpc, "rest": rest}}
    kube.apply(
        servedmodel(
            "ranker",
            namespace,
            versionPolicy={"specific": {"versions": [3]}},
            versionLabels={"stable": 3},
            **spec,
        )
    )
    with model_server_double(
        kube,
        namespace,
        "ranker",
        volume,
        config,
        grpc,
        rest,
        allow_version_labels_for_unavailable_models=True,
        load_delay_seconds=3,
    ) as double:
        kube.wait_condition("servedmodel", "ranker", namespace, "Ready", status="True", what="Ready on 3")
        publish(volume, "ranker", 4)
        kube.apply(
            servedmodel(
                "ranker",
                namespace,
                versionPolicy={"specific": {"versions": [4]}},
                versionLabels={"stable": 4},
                **spec,
            )
        )

        def staged():
            text = kube.get("configmap", "ranker-config", namespace)["data"]["models.config"]
            return "specific { versions: 3 versions: 4 }" in text and 'key: "stable" value: 3' in text

        eventually(staged, timeout=30, what="both versions served, label held on 3")
        sm = kube.get("servedmodel", "ranker", namespace)
        assert condition(sm, "Progressing").get("reason") in ("LabelsPending", "RollingOut")

        def moved():
            text = kube.get("configmap", "ranker-config", namespace)["data"]["models.config"]
            return "specific { versions: 4 }" in text and 'key: "stable" value: 4' in text

        eventually(moved, timeout=90, what="label moved to 4 once AVAILABLE")
        assert double.manager.labels("ranker") == {"stable": 4} or eventually(
            lambda: double.manager.labels("ranker") == {"stable": 4},
            timeout=30,
            what="server took the move",
        )
        assert not [line for line in double.logs if "not currently available for inference" in line]


def test_an_unreachable_model_server_shows_in_status_and_ready_is_not_assumed(
    kube, operator, model_servers, namespace
):
    """Pods that pass their probe say a version is servable, not which: without an answer from the model
    server (a NetworkPolicy, an operator outside the cluster), Ready is Unknown and the reason says why."""
    kube.apply(pvc("models", namespace))
    model_servers.down.add((namespace, "dark"))
    try:
        kube.apply(servedmodel("dark", namespace))
        sm = kube.wait_condition(
            "servedmodel", "dark", namespace, "Ready", reason="ModelServerUnreachable", timeout=90
        )
        ready = condition(sm, "Ready")
        assert ready["status"] == "Unknown"
        assert f"/{namespace}/dark/8501/v1/models/dark" in ready["message"]
        assert sm["status"]["readyReplicas"] == 1  # the pods are ready; only the server's word is missing
        assert "versions" not in sm["status"]
        # A spec edit still reaches the Deployment: no reconcile waits for the silent server.
        kube.apply(servedmodel("dark", namespace, podAnnotations={"edit": "1"}))
        kube.wait_until(
            "deployment",
            "dark",
            namespace,
            lambda d: d["spec"]["template"]["metadata"].get("annotations", {}).get("edit") == "1",
            what="the edit applied",
            timeout=15,
        )
    finally:
        model_servers.down.discard((namespace, "dark"))
    kube.wait_condition(
        "servedmodel",
        "dark",
        namespace,
        "Ready",
        status="True",
        timeout=120,
        what="Ready once the server answers (after the poller's backoff)",
    )
