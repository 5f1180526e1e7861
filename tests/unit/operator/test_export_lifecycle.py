"""The export Job lifecycle on its own: no reconciler, an in-memory Job cache and a recording API."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from servedmodel_operator.export_lifecycle import ExportLifecycle
from servedmodel_operator.kube import ApiError
from servedmodel_operator.spec import parse


def servedmodel(export: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {"storage": {"persistentVolumeClaim": {"claimName": "models"}}, "export": export},
    }


class World:
    """Jobs by name, pods' termination messages by Job name, and what the lifecycle did."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.applied: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []
        self.refuse: ApiError | None = None
        self.deleted: list[str] = []

    def delete(self, obj: dict[str, Any]) -> None:
        self.deleted.append(obj["metadata"]["name"])
        self.jobs.pop(obj["metadata"]["name"], None)

    # KubeApi
    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.refuse is not None:
            raise self.refuse
        self.applied.append(obj)
        self.jobs[obj["metadata"]["name"]] = copy.deepcopy(obj) | {"status": {}}
        return self.jobs[obj["metadata"]["name"]]

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        result = self.results.get(selector.split("=", 1)[1])
        if result is None:
            return []
        terminated = {"message": json.dumps(result)}
        return [{"status": {"containerStatuses": [{"state": {"terminated": terminated}}]}}]

    # JobCache
    def child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.jobs.get(name) if kind == "Job" else None

    def children(self, kind: str, namespace: str, owner: str) -> list[dict[str, Any]]:
        return list(self.jobs.values()) if kind == "Job" else []

    async def event(self, sm: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def step(self, sm: dict[str, Any], record: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        lifecycle = ExportLifecycle(api=self, cache=self, event=self.event)  # type: ignore[arg-type]
        return asyncio.run(lifecycle.step(sm, parse(sm), record))


def finish(job: dict[str, Any], kind: str) -> None:
    job["status"] = {"conditions": [{"type": kind, "status": "True", "reason": "X", "message": "y"}]}


def test_pending_then_succeeded_with_the_version_then_quiet_once_the_job_is_gone():
    world = World()
    sm = servedmodel({"source": {"path": "in/m.keras"}})
    record, cond = world.step(sm, {})
    (job,) = world.applied
    name = job["metadata"]["name"]
    assert record["phase"] == "Pending" and record["jobName"] == name
    assert (cond.type, cond.status, cond.reason) == ("Exported", False, "ExportPending")
    assert world.events == [("Normal", "ExportStarted", f"Started export Job {name}")]

    world.jobs[name]["status"] = {"active": 1}
    record, cond = world.step(sm, record)
    assert record["phase"] == "Running" and cond.reason == "ExportRunning"

    finish(world.jobs[name], "Complete")
    world.results[name] = {"ok": True, "version": 4, "path": "/volume/m/4"}
    record, cond = world.step(sm, record)
    assert record["version"] == 4 and record["message"] == "published version 4"
    assert (cond.status, cond.reason) == (True, "ExportSucceeded")

    del world.jobs[name]
    world.applied.clear()
    again, _ = world.step(sm, record)
    assert again is record and world.applied == []  # a deleted Job never re-runs an export


def test_failure_carries_the_exporters_error_and_one_event():
    world = World()
    sm = servedmodel({"source": {"path": "in/m.keras"}})
    record, _ = world.step(sm, {})
    name = record["jobName"]
    finish(world.jobs[name], "Failed")
    world.results[name] = {"ok": False, "error": "not a valid .keras archive", "exit_code": 3}
    record, cond = world.step(sm, record)
    assert record["phase"] == "Failed" and record["message"] == "not a valid .keras archive"
    assert (cond.status, cond.reason) == (False, "ExportFailed")
    world.step(sm, record)
    assert [e[1] for e in world.events] == ["ExportStarted", "ExportFailed"]


def test_a_new_export_waits_for_the_running_one():
    world = World()
    first, _ = world.step(servedmodel({"source": {"path": "a.keras"}}), {})
    world.jobs[first["jobName"]]["status"] = {"active": 1}
    record, _ = world.step(servedmodel({"source": {"path": "b.keras"}}), first)
    assert record["phase"] == "Pending" and first["jobName"] in record["message"]
    assert len(world.applied) == 1


def test_a_job_the_api_server_rejects_is_failed_not_retried():
    world = World()
    world.refuse = ApiError(422, "spec.template: Invalid value", "Invalid")
    record, cond = world.step(servedmodel({"source": {"path": "a.keras"}}), {})
    assert record["phase"] == "Failed" and "spec.template: Invalid value" in record["message"]
    assert cond.reason == "ExportFailed"


def test_a_retried_export_that_found_its_version_says_so():
    world = World()
    sm = servedmodel({"source": {"path": "in/m.keras"}})
    record, _ = world.step(sm, {})
    name = record["jobName"]
    finish(world.jobs[name], "Complete")
    world.results[name] = {
        "ok": True,
        "version": 3,
        "already_published": True,
        "tensorflow_version": "2.21.0",
    }
    record, cond = world.step(sm, record)
    assert record["version"] == 3 and record["tensorflowVersion"] == "2.21.0"
    assert record["message"] == "version 3 was already published from this source (same sha256): nothing new"
    assert (cond.status, cond.reason) == (True, "ExportSucceeded")


def test_an_export_from_a_newer_tensorflow_than_the_server_warns():
    world = World()
    sm = servedmodel({"source": {"path": "in/m.keras"}})
    sm["spec"]["image"] = "registry.example/serving:custom"
    sm["spec"]["serverVersion"] = "2.18.0"
    record, _ = world.step(sm, {})
    name = record["jobName"]
    finish(world.jobs[name], "Complete")
    world.results[name] = {"ok": True, "version": 5, "tensorflow_version": "2.21.0"}
    record, cond = world.step(sm, record)
    assert (cond.status, cond.reason) == (True, "ExportedByNewerTensorFlow")
    assert cond.message.startswith(
        "version 5 was exported by TensorFlow 2.21.0, newer than the model server's 2.18.0"
    )
    assert "TensorFlow Serving 2.21 or newer" in cond.message
    warnings = [e for e in world.events if e[1] == "ExportedByNewerTensorFlow"]
    assert len(warnings) == 1
    world.step(sm, record)  # the next pass: same condition, no second event
    assert len([e for e in world.events if e[1] == "ExportedByNewerTensorFlow"]) == 1

    # The same release, or an image whose release is unknown: nothing to say.
    sm["spec"]["serverVersion"] = "2.21.1"
    assert world.step(sm, record)[1].reason == "ExportSucceeded"
    del sm["spec"]["serverVersion"]
    assert world.step(sm, record)[1].reason == "ExportSucceeded"
    sm["spec"]["image"] = "tensorflow/serving:2.19.0-gpu"  # an official tag says its release
    assert world.step(sm, record)[1].reason == "ExportedByNewerTensorFlow"


def test_finished_jobs_beyond_the_newest_three_are_deleted():
    world = World()
    for i in range(5):
        job = {"metadata": {"name": f"m-export-old{i}", "creationTimestamp": f"2026-01-0{i + 1}T00:00:00Z"}}
        finish(job, "Failed" if i % 2 else "Complete")
        world.jobs[job["metadata"]["name"]] = job
    world.jobs["m-export-running"] = {
        "metadata": {"name": "m-export-running", "creationTimestamp": "2025-01-01T00:00:00Z"},
        "status": {"active": 1},
    }
    record, _ = world.step(servedmodel({"source": {"path": "new.keras"}}), {})
    assert record["phase"] == "Pending"  # waits for the running one
    assert world.deleted == ["m-export-old1", "m-export-old0"]  # the oldest finished; never a running one
