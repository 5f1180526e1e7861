"""The real operator process against the real local control plane: children, status, drift, deletion."""

from __future__ import annotations

import time

import pytest
from kubehelpers import condition, eventually, pvc, servedmodel
from localcluster import OPERATOR_USER

pytestmark = pytest.mark.integration


def test_servedmodel_becomes_a_serving_deployment(kube, operator, namespace):
    kube.apply(pvc("models", namespace))
    kube.apply(
        servedmodel(
            "resnet",
            namespace,
            replicas=2,
            versionPolicy={"specific": {"versions": [1, 2]}},
            versionLabels={"stable": 1, "canary": 2},
        )
    )

    sm = kube.wait_condition("servedmodel", "resnet", namespace, "Ready", status="True", timeout=90)
    status = sm["status"]
    assert status["observedGeneration"] == sm["metadata"]["generation"]
    assert status["modelName"] == "resnet"
    assert status["versionPolicy"] == "1,2"
    assert status["replicas"] == 2 and status["readyReplicas"] == 2
    assert status["endpoints"] == {
        "rest": f"http://resnet.{namespace}.svc:8501/v1/models/resnet",
        "grpc": f"resnet.{namespace}.svc:8500",
    }
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "Progressing": "False",
        "Degraded": "False",
    }

    uid = sm["metadata"]["uid"]
    dep = kube.get("deployment", "resnet", namespace)
    svc = kube.get("service", "resnet", namespace)
    cm = kube.get("configmap", "resnet-config", namespace)
    for obj in (dep, svc, cm):
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["uid"] == uid and ref["controller"] is True and ref["kind"] == "ServedModel"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "servedmodel-operator"
        managers = {m["manager"] for m in obj["metadata"]["managedFields"] if m["operation"] == "Apply"}
        assert managers == {"servedmodel-operator"}

    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/usr/bin/tensorflow_model_server"]
    assert "--rest_api_port=8501" in container["args"]
    assert "--port=8500" in container["args"]
    assert "--model_config_file=/etc/servedmodel/models.config" in container["args"]
    assert "--model_config_file_poll_wait_seconds=10" in container["args"]
    assert "--allow_version_labels_for_unavailable_models" in container["args"]
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/v1/models/resnet/metadata",
        "port": "rest",
        "scheme": "HTTP",
    }
    assert {m["mountPath"]: m.get("readOnly", False) for m in container["volumeMounts"]} == {
        "/models": True,
        "/etc/servedmodel": True,
        "/tmp": False,
    }
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"grpc": 8500, "rest": 8501}
    assert 'base_path: "/models/resnet"' in cm["data"]["models.config"]

    pods = kube.list("pods", namespace, "app.kubernetes.io/instance=resnet")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)
    reasons = {
        e["reason"]
        for e in kube.events(namespace, "resnet")
        if e["source"].get("component") == "servedmodel-operator"
    }
    assert {"Created", "ModelServing"} <= reasons


def test_spec_change_propagates_and_config_change_does_not_restart(kube, operator, namespace):
    kube.apply(pvc("models", namespace))
    kube.apply(servedmodel("m", namespace))
    kube.wait_condition("servedmodel", "m", namespace, "Ready", status="True", timeout=90)
    template_before = kube.get("deployment", "m", namespace)["spec"]["template"]

    # A version policy change is hot-reloaded by TF Serving: ConfigMap changes, pod template does not.
    kube.apply(servedmodel("m", namespace, versionPolicy={"latest": {"numVersions": 3}}))
    eventually(
        lambda: (
            "latest { num_versions: 3 }"
            in kube.get("configmap", "m-config", namespace)["data"]["models.config"]
        ),
        what="models.config updated",
    )
    assert kube.get("deployment", "m", namespace)["spec"]["template"] == template_before

    # A server flag change needs new pods.
    kube.apply(
        servedmodel(
            "m",
            namespace,
            versionPolicy={"latest": {"numVersions": 3}},
            server={"extraArgs": ["--tensorflow_intra_op_parallelism=2"]},
        )
    )
    eventually(
        lambda: (
            "--tensorflow_intra_op_parallelism=2"
            in kube.get("deployment", "m", namespace)["spec"]["template"]["spec"]["containers"][0]["args"]
        ),
        what="args updated",
    )
    sm = kube.wait_condition(
        "servedmodel", "m", namespace, "Ready", status="True", timeout=90, what="Ready after rollout"
    )
    assert sm["status"]["observedGeneration"] == sm["metadata"]["generation"] == 3
    assert sm["status"]["versionPolicy"] == "latest:3"


def test_drift_is_corrected_and_foreign_fields_kept(kube, operator, namespace):
    kube.apply(pvc("models", namespace))
    kube.apply(servedmodel("d", namespace))
    kube.wait_condition("servedmodel", "d", namespace, "Ready", status="True", timeout=90)

    # Hand edits: a field we own is changed, a foreign label is added.
    kube.kubectl(
        "-n",
        namespace,
        "patch",
        "deployment",
        "d",
        "--type=merge",
        "-p",
        '{"metadata":{"labels":{"team":"vision"}},"spec":{"replicas":5}}',
    )
    eventually(
        lambda: kube.get("deployment", "d", namespace)["spec"]["replicas"] == 1, what="replicas restored"
    )
    assert kube.get("deployment", "d", namespace)["metadata"]["labels"]["team"] == "vision"

    kube.kubectl(
        "-n",
        namespace,
        "patch",
        "configmap",
        "d-config",
        "--type=merge",
        "-p",
        '{"data":{"models.config":"garbage"}}',
    )
    eventually(
        lambda: "model_config_list" in kube.get("configmap", "d-config", namespace)["data"]["models.config"],
        what="ConfigMap restored",
    )

    for kind, name in (("service", "d"), ("configmap", "d-config"), ("deployment", "d")):
        uid = kube.get(kind, name, namespace)["metadata"]["uid"]
        kube.kubectl("-n", namespace, "delete", kind, name, "--wait=false")
        eventually(
            lambda kind=kind, name=name, uid=uid: (
                (kube.get(kind, name, namespace) or {}).get("metadata", {}).get("uid") not in (None, uid)
            ),
            what=f"{kind} recreated",
        )
    reasons = [e["reason"] for e in kube.events(namespace, "d")]
    assert "DriftCorrected" in reasons


def test_deleting_the_servedmodel_garbage_collects_children(kube, operator, namespace):
    kube.apply(pvc("models", namespace))
    kube.apply(servedmodel("gone", namespace))
    eventually(lambda: kube.get("deployment", "gone", namespace), what="deployment")
    kube.kubectl("-n", namespace, "delete", "servedmodel", "gone")
    eventually(
        lambda: all(
            kube.get(k, n, namespace) is None
            for k, n in (("deployment", "gone"), ("service", "gone"), ("configmap", "gone-config"))
        ),
        timeout=60,
        what="garbage collection",
    )


def test_no_write_when_nothing_changed(kube, operator, cluster, namespace):
    kube.apply(pvc("models", namespace))
    kube.apply(servedmodel("quiet", namespace))
    kube.wait_condition("servedmodel", "quiet", namespace, "Ready", status="True", timeout=90)
    time.sleep(2)  # let the last status write land before the quiet window starts
    since = time.time()
    log_before = operator.log_text()
    time.sleep(10)  # the test operator resyncs every 4 s: at least two full passes over every ServedModel
    resyncs = operator.log_text()[len(log_before) :].count(f"reconciled {namespace}/quiet: up to date")
    assert resyncs >= 2, "the operator did not resync during the window"
    writes = [
        w
        for w in cluster.audited_writes(OPERATOR_USER, since)
        if (w.get("objectRef") or {}).get("namespace") == namespace
    ]
    assert writes == [], [(w["verb"], w["objectRef"]) for w in writes]


def test_missing_pvc_is_reported_and_nothing_is_created(kube, operator, namespace):
    kube.apply(servedmodel("nopvc", namespace))
    sm = kube.wait_condition("servedmodel", "nopvc", namespace, "Ready", reason="StorageNotFound")
    ready = condition(sm, "Ready")
    assert ready["status"] == "False" and "models" in ready["message"]
    assert condition(sm, "Degraded")["status"] == "True"
    assert kube.get("deployment", "nopvc", namespace) is None
    assert kube.get("configmap", "nopvc-config", namespace) is None
    events = kube.events(namespace, "nopvc")
    assert any(e["reason"] == "StorageNotFound" and e["type"] == "Warning" for e in events)

    kube.apply(pvc("models", namespace))  # creating the claim is enough: no edit of the ServedModel
    kube.wait_condition(
        "servedmodel", "nopvc", namespace, "Ready", status="True", timeout=90, what="Ready after PVC"
    )


def test_rejected_by_api_server_is_reported(kube, operator, namespace):
    """A spec the schema accepts but the API server rejects in the Deployment: a condition, no crash loop."""
    kube.apply(pvc("models", namespace))
    kube.apply(servedmodel("bad", namespace, env=[{"name": "X", "valueFrom": {"fieldRef": {}}}]))
    sm = kube.wait_condition("servedmodel", "bad", namespace, "Ready", reason="ApplyFailed")
    assert "Deployment" in condition(sm, "Ready")["message"]
    assert operator.proc.poll() is None
    # Nothing half-created: the API server judged every child (a dry run) before any was written, so there
    # is no model-server config, and no Service, for a Deployment that never came.
    assert kube.get("configmap", "bad-config", namespace) is None
    assert kube.get("service", "bad", namespace) is None
