"""The export Job's lifecycle: start one Job per change of spec.export, one at a time, and report its outcome.

States, as `status.export.phase`: Pending (waiting for another export, or the Job has no pod yet), Running,
Succeeded (with the published version, read from the exporter's termination message) and Failed (with the
exporter's error). The Job is the source of truth while it exists; the status record remembers a finished
export after its Job is gone, so deleting a Job never re-runs an export.

Retries are the Job controller's: its podFailurePolicy fails the Job at once on exit codes a retry cannot
change, and the exporter is idempotent, so a retried pod reports the version an earlier pod published.
Finished export Jobs beyond the newest few are deleted; the outcome stays in `status.export`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from . import status as st
from .kube import ApiError, KubeApi
from .render_export import (
    export_hash,
    export_job_name,
    job_failure_message,
    job_phase,
    parse_result,
    render_export_job,
)
from .spec import ServedModelSpec
from .tf_versions import newer_tensorflow_warning
from .workqueue import Retry

log = logging.getLogger(__name__)

KEEP_FINISHED_JOBS = 3  # finished export Jobs kept per ServedModel, besides the current one

Record = dict[str, Any]
# (ServedModel, event type, reason, message): posts an event about the ServedModel.
PostEvent = Callable[[dict[str, Any], str, str, str], Awaitable[None]]


class JobCache(Protocol):
    def child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def children(self, kind: str, namespace: str, owner: str) -> list[dict[str, Any]]: ...


def export_condition(record: Record, warning: str | None = None) -> st.Condition:
    """The Exported condition that says how the export in `record` went (and what to watch out for)."""
    phase = record.get("phase", "Pending")
    if phase == "Succeeded" and warning:
        return st.Condition(st.EXPORTED, True, "ExportedByNewerTensorFlow", warning)
    reason = {"Succeeded": "ExportSucceeded", "Failed": "ExportFailed", "Running": "ExportRunning"}.get(
        phase, "ExportPending"
    )
    return st.Condition(st.EXPORTED, phase == "Succeeded", reason, record.get("message", ""))


_RESULT_FIELDS = ("version", "tensorflowVersion", "message")


def _same_success(before: Record, after: Record) -> bool:
    return before.get("jobName") == after.get("jobName") and before.get("phase") == "Succeeded"


@dataclass
class ExportLifecycle:
    api: KubeApi
    cache: JobCache
    event: PostEvent

    async def step(
        self, sm: dict[str, Any], spec: ServedModelSpec, record: Record
    ) -> tuple[Record, st.Condition]:
        """Move the export of `spec.export` one step on; the new status record and Exported condition."""
        new, _ = await self._step(sm, spec, record)
        await self._prune_finished(spec, keep=new.get("jobName"))
        warning = newer_tensorflow_warning(new.get("tensorflowVersion"), spec, new.get("version"))
        if warning and new.get("phase") == "Succeeded" and not _same_success(record, new):
            await self.event(sm, "Warning", "ExportedByNewerTensorFlow", warning)
        return new, export_condition(new, warning)

    async def _step(
        self, sm: dict[str, Any], spec: ServedModelSpec, record: Record
    ) -> tuple[Record, st.Condition]:
        digest, name = export_hash(spec), export_job_name(spec)
        job = self.cache.child("Job", spec.namespace, name)
        if job is None:
            if record.get("specHash") == digest and record.get("phase") in ("Succeeded", "Failed"):
                return record, export_condition(record)
            busy = [
                j
                for j in self.cache.children("Job", spec.namespace, spec.name)
                if j["metadata"]["name"] != name and job_phase(j) in ("Pending", "Running")
            ]
            if busy:
                waiting = {
                    "specHash": digest,
                    "jobName": name,
                    "phase": "Pending",
                    "message": f"waiting for export Job {busy[0]['metadata']['name']} to finish",
                }
                return waiting, export_condition(waiting)
            try:
                job = await asyncio.to_thread(self.api.apply, render_export_job(spec))
            except ApiError as exc:
                if not exc.permanent:
                    raise Retry(f"creating export Job {name}: {exc}") from exc
                failed = {
                    "specHash": digest,
                    "jobName": name,
                    "phase": "Failed",
                    "message": f"The API server rejected the export Job: {exc.message}",
                }
                await self.event(sm, "Warning", "ExportFailed", failed["message"])
                return failed, export_condition(failed)
            except requests.RequestException as exc:
                raise Retry(f"creating export Job {name}: {exc}") from exc
            await self.event(sm, "Normal", "ExportStarted", f"Started export Job {name}")

        phase = job_phase(job)
        current = {"specHash": digest, "jobName": name, "phase": phase}
        same_job = record.get("jobName") == name
        if phase == "Succeeded":
            if same_job and record.get("phase") == "Succeeded" and "version" in record:
                current.update({k: record[k] for k in _RESULT_FIELDS if k in record})  # read once
            else:
                current.update(await self._published(spec.namespace, name))
            if not (same_job and record.get("phase") == "Succeeded"):
                await self.event(sm, "Normal", "ExportSucceeded", f"Export Job {name}: {current['message']}")
        elif phase == "Failed":
            detail = await self._export_error(spec.namespace, name)
            current["message"] = detail or job_failure_message(job)
            if not (same_job and record.get("phase") == "Failed"):
                await self.event(sm, "Warning", "ExportFailed", f"Export Job {name}: {current['message']}")
        else:
            current["message"] = f"export Job {name} is {phase.lower()}"
        if same_job and record.get("phase") == phase and "message" in record and phase != "Succeeded":
            current["message"] = record["message"]  # keep the first detail; no rewrite on every pass
        return current, export_condition(current)

    async def _termination_results(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        try:
            pods = await asyncio.to_thread(
                self.api.list_pods, namespace, f"batch.kubernetes.io/job-name={job_name}"
            )
        except (ApiError, requests.RequestException) as exc:
            log.warning("cannot read the pods of export Job %s: %s", job_name, exc)
            return []
        results = []
        for pod in pods:
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                result = parse_result(((cs.get("state") or {}).get("terminated") or {}).get("message"))
                if result is not None:
                    results.append(result)
        return results

    async def _published(self, namespace: str, job_name: str) -> Record:
        """version, tensorflowVersion and message from the exporter's result (the termination message)."""
        for result in await self._termination_results(namespace, job_name):
            if result.get("ok") and isinstance(result.get("version"), int):
                version = result["version"]
                fields: Record = {"version": version}
                if isinstance(result.get("tensorflow_version"), str):
                    fields["tensorflowVersion"] = result["tensorflow_version"]
                fields["message"] = (
                    f"version {version} was already published from this source (same sha256): nothing new"
                    if result.get("already_published")
                    else f"published version {version}"
                )
                return fields
        return {"message": "export succeeded"}

    async def _prune_finished(self, spec: ServedModelSpec, keep: str | None) -> None:
        """Delete finished export Jobs of this ServedModel beyond the newest few (and `keep`)."""
        finished = sorted(
            (
                j
                for j in self.cache.children("Job", spec.namespace, spec.name)
                if j["metadata"]["name"] != keep
                and job_phase(j) in ("Succeeded", "Failed")
                and not j["metadata"].get("deletionTimestamp")
            ),
            key=lambda j: (j["metadata"].get("creationTimestamp") or "", j["metadata"]["name"]),
            reverse=True,
        )
        for job in finished[KEEP_FINISHED_JOBS:]:
            try:
                await asyncio.to_thread(self.api.delete, job)
            except (ApiError, requests.RequestException) as exc:
                log.warning("cannot delete finished export Job %s: %s", job["metadata"]["name"], exc)
                continue
            log.info("deleted finished export Job %s/%s", spec.namespace, job["metadata"]["name"])

    async def _export_error(self, namespace: str, job_name: str) -> str | None:
        for result in await self._termination_results(namespace, job_name):
            if not result.get("ok") and result.get("error"):
                return str(result["error"])
        return None
