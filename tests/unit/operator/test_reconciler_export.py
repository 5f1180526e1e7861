"""Export Jobs, driven through the real reconciler with an in-memory cluster view (no API server).

The integration tests run the same code against the real control plane; these cover the timing cases a
fake kubelet cannot produce on demand (a Job still running when the spec changes, a failed export).
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from operatorfakes import FakeApi, FakeCache
from servedmodel_operator.reconciler import Reconciler
from servedmodel_operator.render_export import export_job_name, exporter_args, render_export_job
from servedmodel_operator.spec import parse


class Api(FakeApi):
    """Answers with an empty status (as for an object just created); nothing is deleted and no event
    repeats here."""

    def admit(self, obj):
        obj.setdefault("status", {})
        return obj

    def patch_event(self, namespace, name, patch):
        raise AssertionError("no event repeats here")

    def delete(self, obj):
        raise AssertionError(f"nothing should be deleted here: {obj['kind']}")


def job_pods(job_name: str, result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The export Job's pod, its exporter terminated with `result` as its message (what the kubelet shows)."""
    terminated = {"message": json.dumps(result)}
    pod = {"status": {"containerStatuses": [{"state": {"terminated": terminated}}]}}
    return {f"batch.kubernetes.io/job-name={job_name}": [pod]}


def servedmodel(export):
    return {
        "apiVersion": "servedmodel.io/v1alpha1",
        "kind": "ServedModel",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {
            "storage": {"persistentVolumeClaim": {"claimName": "models"}, "path": "vision/m"},
            "versionPolicy": {"specific": {"versions": [3]}},
            "versionLabels": {"stable": 3},
            "export": export,
        },
    }


def run(reconciler):
    asyncio.run(reconciler.reconcile(("ns", "m")))


def exporting(export) -> tuple[Api, FakeCache, Reconciler]:
    """A first reconcile of a ServedModel with this `export`: it creates the export Job."""
    api, cache = Api(), FakeCache(servedmodel(export))
    rec = Reconciler(api=api, cache=cache)
    run(rec)
    return api, cache, rec


def job_name(cache) -> str:
    return next(name for kind, name in cache.objects if kind == "Job")


def settle(api, cache):
    """What the watches would deliver: applied objects appear in the cache, status lands on the object."""
    for obj in api.applied:
        cache.objects[(obj["kind"], obj["metadata"]["name"])] = copy.deepcopy(obj) | {"status": {}}
    for patch in api.status_patches:
        status = cache.sm.setdefault("status", {})
        for k, v in patch["status"].items():
            if v is None:
                status.pop(k, None)
            else:
                status[k] = v
    api.applied.clear()
    api.status_patches.clear()


def finish(cache, job_name, kind="Complete"):
    cache.objects[("Job", job_name)]["status"] = {
        "conditions": [{"type": kind, "status": "True", "reason": "BackoffLimitExceeded"}]
    }


def test_job_mounts_the_volume_read_write_and_publishes_into_the_base_path():
    spec = parse(
        servedmodel(
            {
                "source": {"path": "incoming/m.keras", "sha256": "a" * 64},
                "keepVersions": 2,
                "warmupRequests": 5,
            }
        )
    )
    job = render_export_job(spec)
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert (
        exporter_args(spec)
        == c["args"]
        == [
            "publish",
            "/volume/incoming/m.keras",
            "--base-path",
            "/volume/vision",
            "--model",
            "m",
            "--version",
            "auto",
            "--result-file",
            "/dev/termination-log",
            "--sha256",
            "a" * 64,
            "--warmup",
            "5",
            "--keep",
            "2",
            "--pin",
            "3",
        ]
    )
    assert c["volumeMounts"][0] == {"name": "models", "mountPath": "/volume"}  # read-write
    assert pod["volumes"][0] == {"name": "models", "persistentVolumeClaim": {"claimName": "models"}}
    assert pod["restartPolicy"] == "Never" and pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert job["metadata"]["ownerReferences"][0]["kind"] == "ServedModel"
    assert len(export_job_name(spec)) <= 63
    long = parse(
        {
            **servedmodel({"source": {"url": "https://x/m.keras"}}),
            "metadata": {"name": "a" * 63, "namespace": "ns", "uid": "u"},
        }
    )
    assert len(export_job_name(long)) <= 63


def test_export_runs_once_reports_the_version_and_never_reruns():
    api, cache, rec = exporting({"source": {"path": "incoming/m.keras"}})
    jobs = [o for o in api.applied if o["kind"] == "Job"]
    assert len(jobs) == 1
    name = jobs[0]["metadata"]["name"]
    settle(api, cache)
    assert cache.sm["status"]["export"]["phase"] == "Pending"

    finish(cache, name)
    api.pods.update(job_pods(name, {"ok": True, "version": 7, "path": "/volume/vision/m/7"}))
    run(rec)
    settle(api, cache)
    record = cache.sm["status"]["export"]
    assert record["phase"] == "Succeeded" and record["version"] == 7 and record["jobName"] == name
    exported = {c["type"]: c for c in cache.sm["status"]["conditions"]}["Exported"]
    assert exported["status"] == "True" and exported["reason"] == "ExportSucceeded"
    assert ("ExportSucceeded", f"Export Job {name}: published version 7") in api.events

    # Unchanged spec: no new Job, even after the old Job is deleted; and no write at all.
    del cache.objects[("Job", name)]
    run(rec)
    assert api.applied == [] and api.status_patches == []


def test_a_changed_export_waits_for_the_running_one():
    api, cache, rec = exporting({"source": {"path": "a.keras"}})
    settle(api, cache)
    first = job_name(cache)
    cache.objects[("Job", first)]["status"] = {"active": 1}

    cache.sm["spec"]["export"] = {"source": {"path": "b.keras"}}
    cache.sm["metadata"]["generation"] = 2
    run(rec)
    assert not [o for o in api.applied if o["kind"] == "Job"]
    settle(api, cache)
    record = cache.sm["status"]["export"]
    assert record["phase"] == "Pending" and first in record["message"]

    finish(cache, first)
    run(rec)
    (second,) = [o for o in api.applied if o["kind"] == "Job"]
    assert second["metadata"]["name"] != first


def test_failed_export_is_reported_with_the_exporters_message():
    api, cache, rec = exporting({"source": {"url": "https://models.example/m.keras"}})
    settle(api, cache)
    name = job_name(cache)
    finish(cache, name, kind="Failed")
    api.pods.update(job_pods(name, {"ok": False, "error": "sha256 mismatch", "exit_code": 3}))
    run(rec)
    settle(api, cache)
    record = cache.sm["status"]["export"]
    assert record["phase"] == "Failed" and record["message"] == "sha256 mismatch"
    exported = {c["type"]: c for c in cache.sm["status"]["conditions"]}["Exported"]
    assert exported["status"] == "False" and exported["reason"] == "ExportFailed"
    assert any(r == "ExportFailed" and "sha256 mismatch" in m for r, m in api.events)
    # Serving is not affected by a failed export.
    ready = {c["type"]: c for c in cache.sm["status"]["conditions"]}["Degraded"]
    assert ready["status"] == "False"


def test_forbidden_is_reported_and_retried_but_invalid_is_only_reported():
    from servedmodel_operator.kube import ApiError
    from servedmodel_operator.workqueue import Retry

    for status, retried in ((403, True), (422, False)):
        sm = servedmodel({"source": {"path": "a.keras"}})
        api, cache = Api(), FakeCache(sm)

        def refuse(obj, dry_run=False, status=status):
            raise ApiError(status, f"refused with {status}", "Forbidden" if status == 403 else "Invalid")

        api.apply = refuse
        rec = Reconciler(api=api, cache=cache)
        try:
            run(rec)
            raised = False
        except Retry:
            raised = True
        assert raised is retried
        (patch,) = api.status_patches
        ready = {c["type"]: c for c in patch["status"]["conditions"]}["Ready"]
        assert ready["reason"] == "ApplyFailed" and f"refused with {status}" in ready["message"]


def test_export_pod_runs_where_the_model_servers_run():
    raw = servedmodel({"source": {"path": "incoming/m.keras"}})
    raw["spec"]["nodeSelector"] = {"pool": "serving"}
    dedicated = {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    raw["spec"]["tolerations"] = [dedicated]
    raw["spec"]["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    pod = render_export_job(parse(raw))["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "serving"}
    # The user's toleration only: the GPU one the model servers get is not needed to export on CPU.
    assert pod["tolerations"] == [dedicated]
    plain = render_export_job(parse(servedmodel({"source": {"path": "incoming/m.keras"}})))
    assert "nodeSelector" not in plain["spec"]["template"]["spec"]
    assert "tolerations" not in plain["spec"]["template"]["spec"]


def test_export_pod_runs_as_the_spec_account_without_a_token_unless_asked():
    pod = render_export_job(parse(servedmodel({"source": {"path": "in/m.keras"}})))["spec"]["template"][
        "spec"
    ]
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod

    sm = servedmodel({"source": {"path": "in/m.keras"}})
    sm["spec"].update(serviceAccountName="uploader", automountServiceAccountToken=True)
    pod = render_export_job(parse(sm))["spec"]["template"]["spec"]
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("uploader", True)


def test_job_fails_at_once_on_exit_codes_a_retry_cannot_change_and_does_not_pile_up():
    from servedmodel_exporter.errors import PERMANENT_EXIT_CODES

    job = render_export_job(parse(servedmodel({"source": {"path": "a.keras"}})))
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "exporter", "operator": "In", "values": [2, 3, 4, 5, 7]},
    }
    assert tuple(rules[0]["onExitCodes"]["values"]) == PERMANENT_EXIT_CODES  # the exporter's own list
    disrupted = {"type": "DisruptionTarget", "status": "True"}
    assert rules[1] == {"action": "Ignore", "onPodConditions": [disrupted]}
    assert job["spec"]["ttlSecondsAfterFinished"] == 7 * 24 * 3600
    assert job["spec"]["template"]["spec"]["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy requires it


def test_export_pods_are_never_selected_as_model_servers():
    from servedmodel_operator.render import render, selector_labels

    spec = parse(servedmodel({"source": {"path": "in/m.keras"}}))
    job = render_export_job(spec)
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/component"] == "exporter"
    assert pod_labels["app.kubernetes.io/instance"] == spec.name
    selectors = [selector_labels(spec)]
    for obj in render(spec):
        sel = obj.get("spec", {}).get("selector")
        if isinstance(sel, dict):
            selectors.append(sel.get("matchLabels", sel))
    assert len(selectors) >= 3  # the Service's and the Deployment's at least
    for selector in selectors:
        assert not all(pod_labels.get(k) == v for k, v in selector.items()), selector
