"""Pure pieces of the reconcile: drift detection, status building, and the work queue's guarantees."""

from __future__ import annotations

import asyncio
import copy

from servedmodel_operator.drift import needs_apply
from servedmodel_operator.render import render
from servedmodel_operator.spec import parse
from servedmodel_operator.status import build_status, rollout_conditions, status_patch
from servedmodel_operator.workqueue import Retry, WorkQueue


def rendered():
    return render(
        parse(
            {
                "metadata": {"name": "m", "namespace": "ns", "uid": "u"},
                "spec": {
                    "storage": {"persistentVolumeClaim": {"claimName": "c"}},
                    "resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}},
                },
            }
        )
    )


def as_served(obj):
    """What the API server returns: defaults added, quantities canonicalised, empty values dropped."""
    live = copy.deepcopy(obj)
    live["metadata"].update(uid="x", resourceVersion="7", labels={**live["metadata"]["labels"], "team": "a"})
    if live["kind"] == "Deployment":
        pod = live["spec"]["template"]["spec"]
        pod["containers"][0]["resources"]["requests"]["cpu"] = "500m"
        pod["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
        pod["volumes"][2]["emptyDir"] = {}
        pod["restartPolicy"] = "Always"
        live["spec"]["revisionHistoryLimit"] = 10
        live["status"] = {"replicas": 1}
    return live


def test_served_object_with_defaults_and_foreign_fields_needs_no_apply():
    for obj in rendered():
        assert not needs_apply(obj, as_served(obj)), obj["kind"]


def test_missing_or_changed_objects_need_apply():
    cm, svc, dep = rendered()
    assert needs_apply(cm, None)
    live = as_served(dep)
    live["spec"]["replicas"] = 5
    assert needs_apply(dep, live)
    live = as_served(cm)
    live["data"]["models.config"] = "garbage"
    assert needs_apply(cm, live)
    live = as_served(svc)
    live["metadata"]["annotations"]["servedmodel.io/spec-hash"] = "old"
    assert needs_apply(svc, live)
    live = as_served(dep)
    live["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert needs_apply(dep, live)


def deployment(
    generation=2, observed=2, replicas=2, ready=2, updated=2, progressing_reason="NewReplicaSetAvailable"
):
    return {
        "metadata": {"generation": generation},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "conditions": [{"type": "Progressing", "reason": progressing_reason, "message": "m"}],
        },
    }


def by_type(conds):
    return {c.type: (c.status, c.reason) for c in conds}


def test_conditions_follow_the_rollout():
    assert by_type(rollout_conditions(deployment(), 2)) == {
        "Ready": (True, "ModelServing"),
        "Progressing": (False, "RolloutComplete"),
        "Degraded": (False, "AsExpected"),
    }
    assert by_type(rollout_conditions(deployment(observed=1), 2))["Progressing"] == (True, "RollingOut")
    assert by_type(rollout_conditions(deployment(ready=1), 2))["Ready"] == (False, "ReplicasNotReady")
    stuck = by_type(rollout_conditions(deployment(ready=0, progressing_reason="ProgressDeadlineExceeded"), 2))
    assert stuck["Degraded"] == (True, "ProgressDeadlineExceeded") and stuck["Ready"][0] is False
    assert by_type(rollout_conditions(None, 1))["Ready"] == (False, "DeploymentMissing")
    assert by_type(rollout_conditions(deployment(replicas=0, ready=0, updated=0), 0))["Ready"] == (
        False,
        "ScaledToZero",
    )


def test_transition_time_moves_only_when_status_flips():
    first = build_status(
        old={}, generation=1, conditions=rollout_conditions(deployment(ready=0), 2), now="T1"
    )
    again = build_status(
        old=first, generation=1, conditions=rollout_conditions(deployment(ready=1), 2), now="T2"
    )
    ready = {c["type"]: c for c in again["conditions"]}["Ready"]
    assert ready["lastTransitionTime"] == "T1" and ready["message"].startswith("1/2")
    flipped = build_status(old=again, generation=2, conditions=rollout_conditions(deployment(), 2), now="T3")
    ready = {c["type"]: c for c in flipped["conditions"]}["Ready"]
    assert ready["lastTransitionTime"] == "T3" and ready["observedGeneration"] == 2


def test_status_patch_is_none_when_nothing_changed_and_clears_dropped_keys():
    s = build_status(
        old={},
        generation=1,
        conditions=rollout_conditions(deployment(), 2),
        now="T",
        model_name="m",
        desired_replicas=2,
        deployment=deployment(),
    )
    assert status_patch(s, dict(s)) is None
    smaller = {k: v for k, v in s.items() if k != "modelName"}
    assert status_patch(s, smaller)["status"]["modelName"] is None


def test_work_queue_serialises_a_key_dedupes_and_retries():
    async def scenario():
        running, seen, failed_once = set(), [], set()
        overlap = []

        async def handler(key):
            if key in running:
                overlap.append(key)
            running.add(key)
            await asyncio.sleep(0.02)
            running.discard(key)
            seen.append(key)
            if key == "flaky" and key not in failed_once:
                failed_once.add(key)
                raise Retry("first try fails", delay=0.05)

        q = WorkQueue(handler, workers=4, retry_min=0.01, retry_max=0.1)
        q.start()
        for _ in range(5):
            q.add("a")  # collapses while queued
        await asyncio.sleep(0.005)
        q.add("a")  # arrives while running: exactly one more run
        q.add("flaky")
        await asyncio.sleep(0.3)
        await q.stop()
        return seen, overlap

    seen, overlap = asyncio.run(scenario())
    assert overlap == []
    assert seen.count("a") == 2
    assert seen.count("flaky") == 2


def test_entries_others_add_to_named_lists_are_theirs():
    """Containers, volumes and env merge by name under server-side apply: an injected sidecar is no drift."""
    dep = rendered()[2]
    live = as_served(dep)
    pod = live["spec"]["template"]["spec"]
    pod["containers"].append({"name": "istio-proxy", "image": "proxy"})
    pod["volumes"].insert(0, {"name": "istio-certs", "emptyDir": {}})
    assert not needs_apply(dep, live)
    pod["containers"][0]["args"] = ["--port=1"]
    assert needs_apply(dep, live)
    del pod["containers"][0]
    assert needs_apply(dep, live)  # ours is gone


def test_content_the_api_server_cannot_convert_is_a_permanent_error():
    from servedmodel_operator.kube import ApiError

    assert ApiError(
        500, "failed to create typed patch object (ns/m; apps/v1, Kind=Deployment): .spec..."
    ).permanent
    assert not ApiError(500, "etcdserver: request timed out").permanent
    assert ApiError(422, "invalid").permanent and not ApiError(409, "conflict").permanent
