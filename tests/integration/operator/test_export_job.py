"""spec.export on the real control plane: the Job, its mounts and args, and its outcome in status.

kwok plays the kubelet: it runs no container, but marks the export pod Succeeded, so the Job controller
completes the Job. The exporter's result, which a kubelet copies from /dev/termination-log into the pod
status, is written into the pod status here the same way.
"""

from __future__ import annotations

import json

import pytest
from exportjobs import export_jobs, exporter_exited, job_pods, wait_export
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
        jobs = export_jobs(kube, namespace)
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
    sm = wait_export(kube, namespace, "iris", lambda r: r.get("phase") == "Succeeded", "export Succeeded")
    assert sm["status"]["export"]["jobName"] == name
    assert condition(sm, "Exported")["reason"] == "ExportSucceeded"

    # What a kubelet would record from the exporter's --result-file.
    (pod,) = job_pods(kube, namespace, name)
    result = json.dumps({"ok": True, "version": 4, "path": "/volume/iris/4"})
    exporter_exited(kube, namespace, pod["metadata"]["name"], 0, result, image=c["image"])
    sm = wait_export(
        kube, namespace, "iris", lambda r: r.get("version") == 4, "published version in status", timeout=30
    )
    assert sm["status"]["export"]["message"] == "published version 4"
    reasons = [e["reason"] for e in kube.events(namespace, "iris")]
    assert "ExportStarted" in reasons and "ExportSucceeded" in reasons

    # The serving Deployment is untouched by exports: TF Serving finds new versions by polling.
    assert kube.get("deployment", "iris", namespace)["metadata"]["generation"] == 1

    # A new export spec runs a new Job; the old record is replaced.
    kube.apply(servedmodel("iris", namespace, export={"source": {"path": "incoming/iris-v2.keras"}}))
    eventually(
        lambda: len(export_jobs(kube, namespace)) == 2,
        what="second export Job",
    )
