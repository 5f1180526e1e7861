"""spec.export on the real control plane: the Job, its mounts and args, and its outcome in status.

kwok plays the kubelet: it runs no container, but marks the export pod Succeeded, so the Job controller
completes the Job. The exporter's result, which a kubelet copies from /dev/termination-log into the pod
status, is written into the pod status here the same way.
"""

from __future__ import annotations

import json

import pytest
from kubehelpers import condition, eventually, pvc, servedmodel

pytestmark = pytest.mark.integration


def test_export_job_runs_and_its_result_lands_in_status(kube, operator, namespace):
    kube.apply(pvc("models", namespace))
    kube.apply(
        servedmodel(
            "iris", namespace, export={"source": {"path": "incoming/iris.keras"}, "warmupRequests": 3}
        )
    )

    def job():
        jobs = kube.list("jobs", namespace, "app.kubernetes.io/component=exporter")
        assert len(jobs) == 1, jobs
        return jobs[0]

    created = eventually(job, what="export Job")
    pod_spec = created["spec"]["template"]["spec"]
    (c,) = pod_spec["containers"]
    assert c["args"][:8] == [
        "publish",
        "/volume/incoming/iris.keras",
        "--base-path",
        "/volume",
        "--model",
        "iris",
        "--version",
        "auto",
    ]
    assert {"name": "models", "mountPath": "/volume"} in c["volumeMounts"]
    assert pod_spec["volumes"][0]["persistentVolumeClaim"] == {"claimName": "models"}
    assert created["metadata"]["ownerReferences"][0]["name"] == "iris"

    name = created["metadata"]["name"]
    sm = eventually(
        lambda: (
            (kube.get("servedmodel", "iris", namespace) or {})
            .get("status", {})
            .get("export", {})
            .get("phase")
            == "Succeeded"
            and kube.get("servedmodel", "iris", namespace)
        ),
        timeout=90,
        what="export Succeeded",
    )
    assert sm["status"]["export"]["jobName"] == name
    assert condition(sm, "Exported")["reason"] == "ExportSucceeded"

    # What a kubelet would record from the exporter's --result-file.
    (pod,) = kube.list("pods", namespace, f"batch.kubernetes.io/job-name={name}")
    result = json.dumps({"ok": True, "version": 4, "path": "/volume/iris/4"})
    patch = {
        "status": {
            "containerStatuses": [
                {
                    "name": "exporter",
                    "image": c["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": result}},
                }
            ]
        }
    }
    kube.kubectl(
        "-n",
        namespace,
        "patch",
        "pod",
        pod["metadata"]["name"],
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(patch),
    )
    sm = eventually(
        lambda: (
            (kube.get("servedmodel", "iris", namespace) or {})["status"]["export"].get("version") == 4
            and kube.get("servedmodel", "iris", namespace)
        ),
        timeout=30,
        what="published version in status",
    )
    assert sm["status"]["export"]["message"] == "published version 4"
    reasons = [e["reason"] for e in kube.events(namespace, "iris")]
    assert "ExportStarted" in reasons and "ExportSucceeded" in reasons

    # The serving Deployment is untouched by exports: TF Serving finds new versions by polling.
    assert kube.get("deployment", "iris", namespace)["metadata"]["generation"] == 1

    # A new export spec runs a new Job; the old record is replaced.
    kube.apply(servedmodel("iris", namespace, export={"source": {"path": "incoming/iris-v2.keras"}}))
    eventually(
        lambda: len(kube.list("jobs", namespace, "app.kubernetes.io/component=exporter")) == 2,
        what="second export Job",
    )
