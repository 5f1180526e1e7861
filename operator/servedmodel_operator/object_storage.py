"""spec.storage.s3: the sync sidecar a model server pod gets, and what the operator learns from it.

TF Serving no longer reads ``s3://`` itself, and a download once at pod start (as other serving stacks
do) would need new pods for every new version. So each model server pod runs ``servedmodel-sync`` (from
the exporter image) as a native sidecar: it mirrors into an emptyDir only the complete versions the
version policy wants (read from the same models.config TF Serving reads, so a policy edit needs no
restart), each one verified and renamed into place, and deletes versions TF Serving has unloaded. Its
readiness probe passes after the first sync, so a pod is Ready only with the bucket's versions on disk.

It reports its state (first sync done, the store's last error, versions too big for the emptyDir) on
``SYNC_PORT``. The operator asks through a Service of its own that publishes not-ready pods too: the pods
that most need explaining (wrong credentials, no such bucket) are exactly the ones that never get ready.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .constants import CONFIG_MOUNT, MODEL_CONFIG_FILE, MODEL_MOUNT, SYNC_PORT
from .spec import ServedModelSpec

CONTAINER = "servedmodel-sync"
VOLUME = "models"
SYNC_COMMAND = "servedmodel-sync"  # the console script in the exporter image


def sync_args(spec: ServedModelSpec) -> list[str]:
    s3 = spec.s3
    assert s3 is not None
    args = [
        f"--bucket={s3.bucket}",
        f"--prefix={s3.prefix}",
        f"--model={s3.model}",
        f"--dest={spec.base_path}",
        # The policy TF Serving is given: read from its own config file, so an edit applies without a roll.
        f"--model-config={CONFIG_MOUNT}/{MODEL_CONFIG_FILE}",
        f"--server=http://127.0.0.1:{spec.rest_port}/v1/models/{spec.model_name}",
        f"--size-limit={s3.size_limit}",
        f"--interval={s3.sync_interval_seconds}",
        f"--port={SYNC_PORT}",
    ]
    return args


def sync_env(spec: ServedModelSpec) -> list[dict[str, Any]]:
    """The store's address and the access key, from the user's Secret (never copied into the pod spec)."""
    s3 = spec.s3
    assert s3 is not None
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "AWS_REGION", "value": s3.region},
    ]
    if s3.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": s3.endpoint})
    if s3.secret_name:
        for var, key in (
            ("AWS_ACCESS_KEY_ID", s3.access_key_id_key),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key_key),
        ):
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": s3.secret_name, "key": key}}})
    return env


def pod_parts(
    spec: ServedModelSpec, security: dict[str, Any], pull_policy: str
) -> dict[str, Any]:
    """The emptyDir, the server's read-only mount of it, and the sidecar (an init container with
    ``restartPolicy: Always``: running before the server starts, ready after its first sync)."""
    s3 = spec.s3
    assert s3 is not None
    health = {"path": "/healthz", "port": SYNC_PORT}
    sidecar = {
        "name": CONTAINER,
        "image": s3.sync_image,
        "imagePullPolicy": pull_policy,
        "command": [SYNC_COMMAND],
        "args": sync_args(spec),
        "env": sync_env(spec),
        "restartPolicy": "Always",
        "ports": [{"name": "sync", "containerPort": SYNC_PORT, "protocol": "TCP"}],
        # Up once it listens and has made the model folder: only then does the server start.
        "startupProbe": {"httpGet": health, "periodSeconds": 1, "failureThreshold": 120},
        # Ready after the first complete sync (and while it stays synced): the pod's readiness waits for it.
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": SYNC_PORT},
            "periodSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {"httpGet": health, "periodSeconds": 15, "timeoutSeconds": 5, "failureThreshold": 4},
        "volumeMounts": [
            {"name": VOLUME, "mountPath": MODEL_MOUNT},
            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
        "securityContext": security,
    }
    return {
        # Bounded: the kubelet evicts a pod whose emptyDir passes its limit, so the sidecar keeps below it.
        "volume": {"name": VOLUME, "emptyDir": {"sizeLimit": s3.size_limit}},
        "server_mount": {"name": VOLUME, "mountPath": MODEL_MOUNT, "readOnly": True},
        "init_containers": [sidecar],
    }


# -- what the sidecar says (pure) ---------------------------------------------------------------------


@dataclass(frozen=True)
class SyncState:
    """The sidecar's report (GET SYNC_STATE_PATH)."""

    first_sync_done: bool
    versions: tuple[int, ...] = ()  # complete versions on the pod's disk
    error_code: str = ""  # the store's error code (AccessDenied, NoSuchBucket, ...) of the last sync
    error_message: str = ""
    too_big: tuple[tuple[int, int], ...] = ()  # (version, bytes) the policy wants that do not fit
    limit_bytes: int = 0
    free_bytes: int = 0


def parse_sync_state(payload: dict[str, Any]) -> SyncState:
    error = payload.get("error") or {}
    return SyncState(
        first_sync_done=bool(payload.get("firstSyncDone")),
        versions=tuple(sorted(int(v) for v in payload.get("versions") or ())),
        error_code=str(error.get("code") or ""),
        error_message=str(error.get("message") or ""),
        too_big=tuple(
            (int(t.get("version", 0)), int(t.get("bytes", 0))) for t in payload.get("tooBig") or ()
        ),
        limit_bytes=int(payload.get("limitBytes") or 0),
        free_bytes=int(payload.get("freeBytes") or 0),
    )


# The store's error codes users most often meet, as condition reasons; others are ObjectStorageError.
REASONS = {
    "AccessDenied": "ObjectStorageAccessDenied",
    "InvalidAccessKeyId": "ObjectStorageAccessDenied",
    "SignatureDoesNotMatch": "ObjectStorageAccessDenied",
    "NoCredentials": "ObjectStorageAccessDenied",
    "NoSuchBucket": "ObjectStorageBucketNotFound",
    "EndpointUnreachable": "ObjectStorageUnreachable",
}
HINTS = {
    "ObjectStorageAccessDenied": (
        "check the access key in the Secret named by storage.s3.credentials and that it may list and read "
        "the bucket"
    ),
    "ObjectStorageBucketNotFound": "check storage.s3.bucket and storage.s3.endpoint",
    "ObjectStorageUnreachable": "check storage.s3.endpoint and the network path from the pods to it",
}


def _gib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def sync_problem(state: SyncState) -> tuple[str, str] | None:
    """(reason, message) when the sidecar cannot do its job, None when it can."""
    if state.error_code:
        reason = REASONS.get(state.error_code, "ObjectStorageError")
        hint = HINTS.get(reason)
        message = f"The sync sidecar cannot read the bucket: {state.error_code}: {state.error_message}"
        return reason, message + (f" ({hint})." if hint else ".")
    if state.too_big:
        listed = ", ".join(f"version {v} needs {_gib(b)}" for v, b in state.too_big)
        return (
            "VersionTooLarge",
            f"Versions the policy asks for do not fit in the local volume (storage.s3.sizeLimit "
            f"{_gib(state.limit_bytes)}, {_gib(state.free_bytes)} free): {listed}. Raise sizeLimit "
            "(with latest N, room for N+1 versions).",
        )
    return None


def sidecar_start_failure(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) when the kubelet cannot start a pod's sync sidecar: the Secret (or a key in it)
    named by storage.s3.credentials is missing (CreateContainerConfigError), or the image cannot be pulled.
    Such a sidecar never runs, so it cannot report anything itself."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        for cs in (pod.get("status") or {}).get("initContainerStatuses") or []:
            if cs.get("name") != CONTAINER:
                continue
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason, message = waiting.get("reason"), (waiting.get("message") or "").strip()
            if reason == "CreateContainerConfigError":
                return (
                    "ObjectStorageCredentialsMissing",
                    f"pod {pod['metadata']['name']} cannot start its sync sidecar: {message} (create the "
                    "Secret named by storage.s3.credentials.secretName, with the keys it names)",
                )
            if reason in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"):
                return (
                    "SyncImagePullFailed",
                    f"pod {pod['metadata']['name']} cannot pull the sync sidecar's image ({reason}): "
                    f"{message or 'no message from the kubelet'}",
                )
    return None
