"""Export Jobs in tests: finding a ServedModel's export Job and pod, writing what a kubelet records when the
exporter exits, and waiting for the outcome in the ServedModel's `status.export`."""

from __future__ import annotations

import json
from typing import Any

from kubehelpers import Check, Kube, eventually

EXPORTER = "app.kubernetes.io/component=exporter"


def export_jobs(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    return kube.list("jobs", namespace, EXPORTER)


def job_pods(kube: Kube, namespace: str, job: str) -> list[dict[str, Any]]:
    return kube.list("pods", namespace, f"batch.kubernetes.io/job-name={job}")


def export_record(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """The ServedModel's `status.export` ({} while it has none, or the ServedModel does not exist)."""
    return _record(kube.get("servedmodel", name, namespace) or {})


def _record(sm: dict[str, Any]) -> dict[str, Any]:
    return (sm.get("status") or {}).get("export") or {}


def wait_export_pod(kube: Kube, namespace: str, timeout: float = 60) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Job, pod) of the namespace's one export Job, once its first pod exists."""

    def job_and_pod() -> tuple[dict[str, Any], dict[str, Any]] | None:
        jobs = export_jobs(kube, namespace)
        assert len(jobs) <= 1, [j["metadata"]["name"] for j in jobs]
        pods = job_pods(kube, namespace, jobs[0]["metadata"]["name"]) if jobs else []
        return (jobs[0], pods[0]) if pods else None

    return eventually(job_and_pod, timeout=timeout, what="the export Job and its pod")


def wait_export(
    kube: Kube, namespace: str, name: str, done: Check, what: str, timeout: float = 90, interval: float = 0.5
) -> dict[str, Any]:
    """Wait until `done(status.export)` holds for ServedModel `name`; return the ServedModel."""
    return kube.wait_until(
        "servedmodel", name, namespace, lambda sm: done(_record(sm)), what, timeout, interval
    )


def exporter_exited(
    kube: Kube,
    namespace: str,
    pod: str,
    exit_code: int,
    message: str,
    phase: str | None = None,
    image: str = "servedmodel-exporter",
) -> None:
    """Write the pod status a kubelet writes when the exporter exits with `exit_code`, its termination message
    (the --result-file JSON) being `message`; with `phase` (Succeeded, Failed) the pod is finished too."""
    terminated = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "message": message,
    }
    status: dict[str, Any] = {
        "containerStatuses": [
            {
                "name": "exporter",
                "image": image,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ]
    }
    if phase:
        status["phase"] = phase
    kube.kubectl(
        "-n",
        namespace,
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
