"""Export Jobs on the real control plane: the Job controller applies the rendered podFailurePolicy, the
operator keeps only the newest finished Jobs, and a retried export's outcome lands in status.

No kubelet runs the exporter here. The export pods are kept off kwok's node (a node selector no node has),
so nothing else touches them, and each test writes the pod status a kubelet would write when the exporter
exits: phase Failed, the exit code, and the --result-file JSON as the termination message.
"""

from __future__ import annotations

import json

import pytest
from exportjobs import export_jobs, exporter_exited, job_pods, wait_export, wait_export_pod
from kubehelpers import condition, eventually, pvc, servedmodel

pytestmark = pytest.mark.integration

NOWHERE = {"servedmodel.io/test-node": "none"}  # no node has it: export pods stay unscheduled


def unscheduled_export(kube, namespace: str, export: dict, **spec) -> tuple[dict, dict]:
    """ServedModel iris with `export`, its export pods kept off every node: (the Job, its first pod)."""
    kube.apply(pvc("models", namespace))
    kube.apply(servedmodel("iris", namespace, nodeSelector=NOWHERE, export=export, **spec))
    return wait_export_pod(kube, namespace)


def set_server_version(kube, namespace: str, version: str, check: bool = True):
    """`kubectl patch` of ServedModel iris's spec.serverVersion (a merge patch, as a user would write it)."""
    patch = json.dumps({"spec": {"serverVersion": version}})
    return kube.kubectl(
        "-n", namespace, "patch", "servedmodel", "iris", "--type=merge", "-p", patch, check=check
    )


def test_a_permanent_exit_code_fails_the_job_at_once(kube, operator, namespace):
    job, pod = unscheduled_export(
        kube, namespace, {"source": {"path": "incoming/iris.keras"}, "backoffLimit": 3}
    )
    name = job["metadata"]["name"]
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2, 3, 4, 5, 7]
    assert job["spec"]["template"]["spec"]["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    error = "/volume/incoming/iris.keras is not a valid .keras archive: it is not a zip file"
    result = {"ok": False, "error": error, "exit_code": 3}
    exporter_exited(kube, namespace, pod["metadata"]["name"], 3, json.dumps(result), phase="Failed")

    failed = kube.wait_condition(
        "job", name, namespace, "Failed", status="True", what="Job failed by its pod failure policy"
    )
    assert condition(failed, "Failed")["reason"] == "PodFailurePolicy"
    assert len(job_pods(kube, namespace, name)) == 1  # no retry, although backoffLimit allows 3
    sm = wait_export(kube, namespace, "iris", lambda r: r.get("phase") == "Failed", "ExportFailed in status")
    assert sm["status"]["export"]["message"] == error
    assert condition(sm, "Exported")["reason"] == "ExportFailed"


def test_a_transient_exit_code_is_retried_and_the_retry_reports_the_published_version(
    kube, operator, namespace
):
    job, first = unscheduled_export(
        kube, namespace, {"source": {"url": "http://models.invalid/iris.keras"}, "backoffLimit": 2}
    )
    name = job["metadata"]["name"]
    result = {"ok": False, "error": "version 4 was published, but retention failed: ...", "exit_code": 6}
    # Published, then retention failed (6): the Job controller retries.
    exporter_exited(kube, namespace, first["metadata"]["name"], 6, json.dumps(result), phase="Failed")
    retry = eventually(
        lambda: [
            p for p in job_pods(kube, namespace, name) if p["metadata"]["name"] != first["metadata"]["name"]
        ],
        timeout=90,
        what="a second pod (the retry)",
    )[0]
    job = kube.get("job", name, namespace)
    assert condition(job, "Failed").get("status") != "True"
    assert (job.get("status") or {}).get("failed") == 1

    # The retried exporter finds its source published as version 4 and says so; it exits 0. A kubelet
    # would mark the pod Succeeded; the Job controller then completes the Job.
    result = {"ok": True, "version": 4, "path": "/volume/iris/4", "already_published": True}
    exporter_exited(kube, namespace, retry["metadata"]["name"], 0, json.dumps(result), phase="Succeeded")
    sm = wait_export(
        kube, namespace, "iris", lambda r: r.get("version") == 4, "the retry's version in status"
    )
    assert sm["status"]["export"]["phase"] == "Succeeded"
    assert sm["status"]["export"]["message"] == (
        "version 4 was already published from this source (same sha256): nothing new"
    )
    assert condition(sm, "Exported")["reason"] == "ExportSucceeded"


def test_finished_export_jobs_do_not_pile_up(kube, operator, namespace):
    """kwok completes each export pod; five exports later, the three newest finished Jobs remain."""
    kube.apply(pvc("models", namespace))
    names, created = [], {}
    for i in range(5):
        kube.apply(servedmodel("iris", namespace, export={"source": {"path": f"incoming/iris-{i}.keras"}}))
        # This export's own Job: the status read first may still be the last export's, Succeeded too.
        sm = wait_export(
            kube,
            namespace,
            "iris",
            lambda r: r.get("phase") == "Succeeded" and r.get("jobName") not in names,
            f"export {i} Succeeded",
        )
        names.append(sm["status"]["export"]["jobName"])
        created[names[-1]] = kube.get("job", names[-1], namespace)["metadata"]["creationTimestamp"]
        assert len(set(names)) == i + 1
    left = eventually(
        lambda: (
            lambda jobs: len(jobs) == 4 and jobs  # the current one and the three newest before it
        )([j for j in export_jobs(kube, namespace) if not j["metadata"].get("deletionTimestamp")]),
        timeout=60,
        what="old export Jobs deleted",
    )
    kept = {j["metadata"]["name"] for j in left}
    assert names[-1] in kept and kept <= set(names)
    # The one deleted is the oldest (creation times have whole seconds: a tie may pick either of two).
    (deleted,) = set(names) - kept
    assert all(created[deleted] <= created[name] for name in kept), (deleted, created)
    assert kube.get("servedmodel", "iris", namespace)["status"]["export"]["jobName"] == names[-1]


def test_an_export_by_a_newer_tensorflow_than_the_server_is_reported(kube, operator, namespace, tmp_path):
    """The real exporter (real TensorFlow) writes its result; a server declared older gets a warning."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import keras

    model = keras.Sequential([keras.Input((3,), name="x"), keras.layers.Dense(1)])
    model.save(tmp_path / "m.keras")
    result_file = tmp_path / "termination-log"
    exporter = Path(__file__).resolve().parents[3] / "exporter"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "servedmodel_exporter.cli",
            "publish",
            str(tmp_path / "m.keras"),
            "--quiet",
            "--base-path",
            str(tmp_path / "volume"),
            "--model",
            "iris",
            "--result-file",
            str(result_file),
        ],
        env={**os.environ, "PYTHONPATH": str(exporter), "TF_CPP_MIN_LOG_LEVEL": "2"},
        check=True,
        timeout=300,
    )
    result = json.loads(result_file.read_text())
    exported_by = result["tensorflow_version"]

    _, pod = unscheduled_export(
        kube,
        namespace,
        {"source": {"path": "incoming/iris.keras"}},
        image="registry.example/serving:custom",
        serverVersion="2.18.0",
    )
    exporter_exited(kube, namespace, pod["metadata"]["name"], 0, result_file.read_text(), "Succeeded", "x")
    sm = kube.wait_condition(
        "servedmodel", "iris", namespace, "Exported", reason="ExportedByNewerTensorFlow", timeout=90
    )
    assert sm["status"]["export"]["tensorflowVersion"] == exported_by
    message = condition(sm, "Exported")["message"]
    assert message.startswith(
        f"version 1 was exported by TensorFlow {exported_by}, newer than the model server's 2.18.0"
    ), message
    assert "ExportedByNewerTensorFlow" in [e["reason"] for e in kube.events(namespace, "iris")]

    # Declaring the server's real release (the exporter's) clears the warning.
    set_server_version(kube, namespace, exported_by)
    kube.wait_condition(
        "servedmodel", "iris", namespace, "Exported", reason="ExportSucceeded", what="warning cleared"
    )
    # A release the schema cannot read is refused by the API server.
    refused = set_server_version(kube, namespace, "latest", check=False)
    assert refused.returncode != 0 and "serverVersion" in refused.stderr
