"""Status, rebuilt from what the operator observes on every reconcile (never read back and patched up).

Conditions follow the Kubernetes API conventions: a list keyed by type, CamelCase reasons, a human
message, and a lastTransitionTime that only moves when the status value flips.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

READY, PROGRESSING, DEGRADED, EXPORTED = "Ready", "Progressing", "Degraded", "Exported"


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None: Unknown (the operator cannot tell)
    reason: str
    message: str


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    old: list[dict[str, Any]], new: list[Condition], generation: int, now: str
) -> list[dict[str, Any]]:
    """New conditions, keeping each one's lastTransitionTime when its status did not change."""
    previous = {c.get("type"): c for c in old or []}
    merged = []
    for cond in new:
        status = "Unknown" if cond.status is None else "True" if cond.status else "False"
        before = previous.get(cond.type)
        since = before.get("lastTransitionTime") if before and before.get("status") == status else None
        merged.append(
            {
                "type": cond.type,
                "status": status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": since or now,
                "observedGeneration": generation,
            }
        )
    return merged


def _deployment_condition(deployment: dict[str, Any], ctype: str) -> dict[str, Any]:
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return {}


def rollout_conditions(deployment: dict[str, Any] | None, desired_replicas: int) -> list[Condition]:
    """Ready/Progressing/Degraded from the model server Deployment's rollout."""
    if deployment is None:
        return [
            Condition(READY, False, "DeploymentMissing", "The model server Deployment does not exist yet."),
            Condition(PROGRESSING, True, "Creating", "Creating the model server Deployment."),
            Condition(DEGRADED, False, "AsExpected", ""),
        ]
    meta, st = deployment.get("metadata") or {}, deployment.get("status") or {}
    current = st.get("observedGeneration", 0) >= meta.get("generation", 0)
    ready = st.get("readyReplicas", 0) or 0
    updated = st.get("updatedReplicas", 0) or 0
    total = st.get("replicas", 0) or 0
    progress = _deployment_condition(deployment, "Progressing")
    if progress.get("reason") == "ProgressDeadlineExceeded":
        return [
            Condition(READY, ready >= desired_replicas > 0, "RolloutStuck", progress.get("message", "")),
            Condition(PROGRESSING, False, "ProgressDeadlineExceeded", progress.get("message", "")),
            Condition(DEGRADED, True, "ProgressDeadlineExceeded", progress.get("message", "")),
        ]
    rolled_out = current and updated >= desired_replicas and total == updated and ready >= desired_replicas
    if desired_replicas == 0:
        ready_cond = Condition(
            READY, False, "ScaledToZero", "spec.replicas is 0: no model server is running."
        )
    elif rolled_out:
        ready_cond = Condition(
            READY,
            True,
            "ModelServing",
            f"{ready}/{desired_replicas} model server replicas have a servable version.",
        )
    else:
        ready_cond = Condition(
            READY,
            False,
            "ReplicasNotReady",
            f"{ready}/{desired_replicas} model server replicas have a servable version.",
        )
    if rolled_out:
        prog = Condition(PROGRESSING, False, "RolloutComplete", "The model server Deployment is rolled out.")
    else:
        prog = Condition(
            PROGRESSING,
            True,
            "RollingOut",
            f"{updated}/{desired_replicas} replicas updated, {ready} ready.",
        )
    return [ready_cond, prog, Condition(DEGRADED, False, "AsExpected", "")]


def with_model_server(
    conditions: list[Condition], verdict: tuple[bool, str, str] | None, failed: list[str]
) -> list[Condition]:
    """Refine the rollout's conditions with what TF Serving reports about its versions.

    Ready needs both: pods whose readiness probe passes and the versions the policy asks for AVAILABLE.
    A version that failed to load makes the ServedModel Degraded, with TF Serving's own error message.
    """
    by_type = {c.type: c for c in conditions}
    ready = by_type[READY]
    if verdict is not None and ready.status:
        ok, reason, message = verdict
        by_type[READY] = Condition(READY, ok, reason, message)
    if failed and not by_type[DEGRADED].status:
        by_type[DEGRADED] = Condition(DEGRADED, True, "VersionLoadFailed", "; ".join(failed))
    return [by_type[c.type] for c in conditions]


NO_SERVABLE_VERSION = "NoServableVersion"


def servers_without_a_version(pods: list[dict[str, Any]], container: str) -> int:
    """Model server containers that run but have not passed their startup probe. TF Serving opens its ports
    only once it has loaded a version, so such a server has found none yet (or is still loading one)."""
    waiting = 0
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        for c in (pod.get("status") or {}).get("containerStatuses") or []:
            running = "running" in (c.get("state") or {})
            if c.get("name") == container and running and not c.get("started") and not c.get("ready"):
                waiting += 1
    return waiting


def with_no_servable_version(
    conditions: list[Condition], waiting: int, model: str, where: str
) -> list[Condition]:
    """Ready=False says why when no replica is ready because the servers have no version to serve (rather
    than the generic ReplicasNotReady): what users most often meet first, with what to do about it."""
    ready = next(c for c in conditions if c.type == READY)
    if not waiting or ready.status or ready.reason != "ReplicasNotReady":
        return conditions
    message = (
        f"{ready.message[:-1]}: TF Serving runs but has found no version of model {model!r} under {where} "
        "(or is still loading one). Publish a version into a numbered folder there, for example with "
        f"`servedmodel-export publish MODEL.keras --base-path <where the claim is mounted> --model {model}`; "
        "it is served without a restart."
    )
    why = Condition(READY, False, NO_SERVABLE_VERSION, message)
    return [why if c.type == READY else c for c in conditions]


def with_delete_failures(conditions: list[Condition], refused: list[str]) -> list[Condition]:
    """Children the operator could not delete: Degraded, with the API server's messages (a 403 names the
    missing right). What serves is unchanged, so Ready is left as it is."""
    return [
        Condition(DEGRADED, True, "DeleteFailed", "; ".join(refused)) if c.type == DEGRADED else c
        for c in conditions
    ]


def with_image_pull_failure(conditions: list[Condition], failure: tuple[str, str] | None) -> list[Condition]:
    """A pod that cannot pull the model image: Degraded with the kubelet's reason and message, and, while
    no pod serves, Ready=False with the same (during a roll the older pods keep serving: Ready stays)."""
    if failure is None:
        return conditions
    reason, message = failure
    by_type = {c.type: c for c in conditions}
    if not by_type[READY].status:
        by_type[READY] = Condition(READY, False, reason, message)
    by_type[DEGRADED] = Condition(DEGRADED, True, reason, message)
    return [by_type[c.type] for c in conditions]


def with_sync_state(
    conditions: list[Condition], first_sync_done: bool, problem: tuple[str, str] | None
) -> list[Condition]:
    """What the S3 sync sidecars say: a store error or a version too big makes the ServedModel Degraded
    with the store's own message, and, while no pod serves, not Ready for that reason (pods serving
    versions synced before keep it Ready)."""
    by_type = {c.type: c for c in conditions}
    if problem is not None:
        reason, message = problem
        if not by_type[READY].status:
            by_type[READY] = Condition(READY, False, reason, message)
        by_type[DEGRADED] = Condition(DEGRADED, True, reason, message)
    elif not first_sync_done and not by_type[READY].status:
        by_type[READY] = Condition(
            READY,
            False,
            "AwaitingFirstSync",
            "The sync sidecar is mirroring the bucket's versions for the first time.",
        )
    return [by_type[c.type] for c in conditions]


def image_status(
    reference: str, mount: str, why: str, digests: dict[str, int], old: dict[str, Any] | None
) -> dict[str, Any]:
    """status.image: the digest every ready pod serves (kept from ``old`` when the pods were not read)."""
    out: dict[str, Any] = {"reference": reference, "mount": mount, "mountReason": why}
    if digests:
        out["servedDigests"] = [{"digest": d, "readyReplicas": n} for d, n in sorted(digests.items())]
        out["digest"] = next(iter(digests)) if len(digests) == 1 else ""
    elif old and old.get("reference") == reference:
        for key in ("servedDigests", "digest"):
            if key in old:
                out[key] = old[key]
    return out


def blocked_conditions(reason: str, message: str) -> list[Condition]:
    """The spec cannot be served (invalid, storage missing, rejected by the API server)."""
    return [
        Condition(READY, False, reason, message),
        Condition(PROGRESSING, False, reason, message),
        Condition(DEGRADED, True, reason, message),
    ]


def build_status(
    *,
    old: dict[str, Any],
    generation: int,
    conditions: list[Condition],
    model_name: str | None = None,
    version_policy: str | None = None,
    endpoints: dict[str, str] | None = None,
    deployment: dict[str, Any] | None = None,
    desired_replicas: int | None = None,
    export: dict[str, Any] | None = None,
    versions: list[dict[str, Any]] | None = None,
    canary: dict[str, Any] | None = None,
    image: dict[str, Any] | None = None,
    now: str | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": merge_conditions(
            old.get("conditions") or [], conditions, generation, now or now_rfc3339()
        ),
    }
    known = {  # each field only when the caller knows it
        "modelName": model_name,
        "versionPolicy": version_policy,
        "endpoints": endpoints,
        "export": export or None,  # an empty record is no record
        "versions": versions,
        "canary": canary,
        "image": image,
    }
    status.update((k, v) for k, v in known.items() if v is not None)
    if desired_replicas is not None:
        st = (deployment or {}).get("status") or {}
        status["replicas"] = desired_replicas
        status["readyReplicas"] = st.get("readyReplicas", 0) or 0
        status["updatedReplicas"] = st.get("updatedReplicas", 0) or 0
    return status


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """The merge patch that turns `old` into `new`, or None when nothing would change (no write)."""
    if old == new:
        return None
    return {"status": {**{k: None for k in old if k not in new}, **new}}
