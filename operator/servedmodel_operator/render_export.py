"""Pure rendering of the export Job that publishes a new model version with the exporter.

The Job's name carries a hash of `spec.export`, so an unchanged section maps to the same Job and is
never run twice, and a changed one maps to a new Job.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any

from .constants import EXPORTER_APP_NAME, EXPORTER_USER, LABEL_COMPONENT, LABEL_NAME, VOLUME_MOUNT
from .naming import child_name
from .object_storage import sync_env
from .render import (
    _metadata,
    _stamp,
    common_labels,
    pod_identity,
    restricted_container_security,
    restricted_pod_security,
)
from .spec import ServedModelSpec

# The exporter's exit codes that a retry of the same command cannot change: usage, source, verification,
# version exists (from another source), no space. Equal to servedmodel_exporter.errors.PERMANENT_EXIT_CODES
# (a test checks it; the operator does not import the exporter package).
PERMANENT_EXIT_CODES = (2, 3, 4, 5, 7)
# Finished export Jobs are deleted after a week at the latest; the operator keeps fewer (export_lifecycle).
FINISHED_JOB_TTL_SECONDS = 7 * 24 * 3600


def export_hash(spec: ServedModelSpec) -> str:
    assert spec.export is not None
    canonical = json.dumps(spec.export.raw, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def export_job_name(spec: ServedModelSpec) -> str:
    """`<name>-export-<hash of spec.export>`, shortened with a hash of the name when too long (naming.py)."""
    return child_name(spec.name, f"export-{export_hash(spec)}")


def export_labels(spec: ServedModelSpec) -> dict[str, str]:
    """Outside the model servers' selector: an export pod must never be taken for a model server by the
    Service (its EndpointSlices churned with every export, and a request failed as one finished), the
    PodDisruptionBudget, the ServiceMonitor or the operator's own reads of the pods."""
    return {**common_labels(spec), LABEL_NAME: EXPORTER_APP_NAME, LABEL_COMPONENT: "exporter"}


def exporter_args(spec: ServedModelSpec) -> list[str]:
    """`servedmodel-export publish` into the folder TF Serving watches: <base>/<model>/ = the base path."""
    export = spec.export
    assert export is not None
    if spec.s3 is not None:  # into the bucket the sync sidecars read (credentials in the env)
        destination = ["--to", spec.s3.url, "--model", spec.s3.model]
    else:
        model_dir = posixpath.normpath(posixpath.join(VOLUME_MOUNT, spec.path))
        destination = [
            "--base-path",
            posixpath.dirname(model_dir),
            "--model",
            posixpath.basename(model_dir),
        ]
    source = export.source_url or posixpath.join(VOLUME_MOUNT, export.source_path)
    args = [
        "publish",
        source,
        *destination,
        "--version",
        export.version,
        "--result-file",
        "/dev/termination-log",
    ]
    if export.sha256:
        args += ["--sha256", export.sha256]
    if export.warmup_requests:
        args += ["--warmup", str(export.warmup_requests)]
    if export.keep_versions:
        args += ["--keep", str(export.keep_versions)]
        pinned = set(spec.version_policy.versions) | set(spec.version_labels.values())
        for version in sorted(pinned):
            args += ["--pin", str(version)]
    return args


def render_export_job(spec: ServedModelSpec) -> dict[str, Any]:
    export = spec.export
    assert export is not None
    labels = export_labels(spec)
    meta = _metadata(spec, export_job_name(spec))
    meta["labels"] = labels
    container: dict[str, Any] = {
        "name": "exporter",
        "image": export.image,
        "imagePullPolicy": export.image_pull_policy,
        "args": exporter_args(spec),
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"}],
        # The exporter writes a short JSON result here; the logs tail explains a crash.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "models", "mountPath": VOLUME_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": restricted_container_security(),
    }
    volumes: list[dict[str, Any]] = [
        {"name": "models", "persistentVolumeClaim": {"claimName": spec.claim_name}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if spec.s3 is not None:  # no volume: the bucket, with the sidecars' address and access key
        container["env"] += [e for e in sync_env(spec) if e["name"] != "HOME"]
        container["volumeMounts"] = container["volumeMounts"][1:]
        volumes = volumes[1:]
    if export.resources:
        container["resources"] = dict(export.resources)
    return _stamp(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta,
            "spec": {
                "backoffLimit": export.backoff_limit,
                "activeDeadlineSeconds": export.timeout_seconds,
                "ttlSecondsAfterFinished": FINISHED_JOB_TTL_SECONDS,
                "podFailurePolicy": pod_failure_policy(),
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        **pod_identity(spec),
                        "containers": [container],
                        "securityContext": {
                            **restricted_pod_security(EXPORTER_USER),
                            # chown the volume only when its root does not have our group yet, not
                            # every file of every version on every run
                            "fsGroupChangePolicy": "OnRootMismatch",
                        },
                        "volumes": volumes,
                        "enableServiceLinks": False,
                        **export_placement(spec),
                    },
                },
            },
        }
    )


def pod_failure_policy() -> dict[str, Any]:
    """Fail the Job at once when the exporter says a retry cannot help; a disrupted pod (evicted, preempted,
    node drained) is retried without counting against backoffLimit; anything else (exit 1, 6, 8, a crash)
    is retried with the Job controller's exponential backoff, up to backoffLimit."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": "exporter",
                    "operator": "In",
                    "values": list(PERMANENT_EXIT_CODES),
                },
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


def export_placement(spec: ServedModelSpec) -> dict[str, Any]:
    """The model servers' node selector, tolerations and affinity: the export pod must reach the same
    volume (a ReadWriteOnce claim is mounted on one node only) on the nodes the user chose for this model.
    The GPU toleration added for GPU servers is not copied: exporting runs on CPU."""
    placement: dict[str, Any] = {}
    if spec.node_selector:
        placement["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        placement["tolerations"] = [dict(t) for t in spec.tolerations]
    if spec.affinity:
        placement["affinity"] = dict(spec.affinity)
    return placement


def job_phase(job: dict[str, Any]) -> str:
    """Pending, Running, Succeeded or Failed, from the Job's conditions and counters."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") == "Complete":
            return "Succeeded"
        if cond.get("status") == "True" and cond.get("type") == "Failed":
            return "Failed"
    return "Running" if status.get("active") else "Pending"


def job_failure_message(job: dict[str, Any]) -> str:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".strip(": ")
    return "the export Job failed"


def parse_result(message: str | None) -> dict[str, Any] | None:
    """The exporter's --result-file JSON, as the kubelet copied it into the pod's termination message."""
    if not message:
        return None
    try:
        result = json.loads(message)
    except ValueError:
        return None
    return result if isinstance(result, dict) and "ok" in result else None
