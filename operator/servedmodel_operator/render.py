"""Pure rendering: a validated spec in, the desired ConfigMap, Service and Deployment out.

No I/O here. Names are deterministic (so a retry never duplicates), every object carries the standard
labels and a controller owner reference, and each carries a hash of itself so the reconciler can tell a
changed spec from an unchanged one without asking the API server.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import model_image, object_storage
from .constants import (
    ANNOTATION_RESTART_CHECKSUM,
    ANNOTATION_SPEC_HASH,
    API_VERSION,
    APP_NAME,
    CONFIG_MOUNT,
    KIND,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    LABEL_TRACK,
    MODEL_CONFIG_FILE,
    MODEL_MOUNT,
    OPERATOR_NAME,
    RUN_AS_USER,
    SYNC_PORT,
    TF_SERVING_BINARY,
)
from .model_image import MODELCAR
from .naming import child_name
from .spec import ServedModelSpec

ANNOTATION_LABELS = "servedmodel.io/version-labels"  # the labels TF Serving was last given (labels.py)

BATCHING_FILE = "batching.config"
MONITORING_FILE = "monitoring.config"
# ConfigMap keys TF Serving re-reads while running; every other key is read once at start-up, so a change
# to one of those must roll the pods (the restart checksum covers exactly them).
HOT_RELOADED_KEYS = frozenset({MODEL_CONFIG_FILE})
GPU_RESOURCE = "nvidia.com/gpu"
PRESTOP_SLEEP_SECONDS = 5
SERVER_CONTAINER = "tensorflow-serving"  # the model server's container in the pod
# Kinds of children the reconciler deletes when the spec no longer renders them (an HPA after autoscaling
# is turned off, a canary's Deployment after promotion or rollback, ...). Export Jobs are history: kept.
PRUNABLE_KINDS = (
    "ConfigMap",
    "Service",
    "Deployment",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "ServiceMonitor",
)


def names(spec: ServedModelSpec, track: str = "stable") -> dict[str, str]:
    """Deterministic child names, each a valid DNS label of at most 63 characters (see naming.py)."""
    if track == "canary":
        return {
            "deployment": child_name(spec.name, "canary"),
            "configmap": child_name(spec.name, "canary-config"),
            "service": child_name(spec.name, "canary"),
        }
    return {"deployment": spec.name, "service": spec.name, "configmap": child_name(spec.name, "config")}


def track_service_name(spec: ServedModelSpec, track: str) -> str:
    """While a canary runs, each track also has a Service of its own: for tests by hand and for status."""
    return child_name(spec.name, track)


def selector_labels(spec: ServedModelSpec, track: str | None = None) -> dict[str, str]:
    """Minimal and immutable: a Deployment's selector can never change after creation. The Service selects
    both tracks (the traffic split of a canary is the ratio of replicas); each Deployment its own."""
    labels = {LABEL_NAME: APP_NAME, LABEL_INSTANCE: spec.name}
    if track is not None:
        labels[LABEL_TRACK] = track
    return labels


def common_labels(spec: ServedModelSpec) -> dict[str, str]:
    return {
        **selector_labels(spec),
        LABEL_COMPONENT: "model-server",
        LABEL_MANAGED_BY: OPERATOR_NAME,
        LABEL_PART_OF: "servedmodel",
    }


def owner_reference(spec: ServedModelSpec) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": spec.name,
        "uid": spec.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def render_model_config(spec: ServedModelSpec) -> str:
    """TF Serving's ModelServerConfig in protobuf text format (reference section 4.1)."""
    policy = spec.version_policy
    if policy.kind == "latest":
        policy_text = f"latest {{ num_versions: {policy.num_versions} }}"
    elif policy.kind == "specific":
        policy_text = "specific { " + " ".join(f"versions: {v}" for v in policy.versions) + " }"
    else:
        policy_text = "all {}"
    lines = [
        "model_config_list {",
        "  config {",
        f"    name: {_quote(spec.model_name)}",
        f"    base_path: {_quote(spec.base_path)}",
        '    model_platform: "tensorflow"',
        f"    model_version_policy {{ {policy_text} }}",
    ]
    for label, version in sorted(spec.version_labels.items()):
        lines.append(f"    version_labels {{ key: {_quote(label)} value: {version} }}")
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def render_batching_config(spec: ServedModelSpec) -> str:
    """BatchingParameters in protobuf text format (reference 4.4): wrapper types, so `{ value: N }`."""
    b = spec.batching
    assert b is not None
    lines = [
        f"max_batch_size {{ value: {b.max_batch_size} }}",
        f"batch_timeout_micros {{ value: {b.batch_timeout_micros} }}",
        f"max_enqueued_batches {{ value: {b.max_enqueued_batches} }}",
        f"num_batch_threads {{ value: {b.num_batch_threads} }}",
    ]
    lines += [f"allowed_batch_sizes: {size}" for size in b.allowed_batch_sizes]
    if b.pad_variable_length_inputs:
        lines.append("pad_variable_length_inputs: true")
    return "\n".join(lines) + "\n"


def render_monitoring_config(spec: ServedModelSpec) -> str:
    """MonitoringConfig in protobuf text format (reference 4.3, 7)."""
    assert spec.monitoring is not None
    return f"prometheus_config {{\n  enable: true\n  path: {_quote(spec.monitoring.path)}\n}}\n"


def prometheus_enabled(spec: ServedModelSpec) -> bool:
    return spec.monitoring is not None and spec.monitoring.prometheus


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _stamp(obj: dict[str, Any]) -> dict[str, Any]:
    """Record the object's own hash in an annotation; the reconciler compares it with the live one."""
    obj["metadata"].setdefault("annotations", {})[ANNOTATION_SPEC_HASH] = _hash(obj)
    return obj


def _metadata(spec: ServedModelSpec, name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": spec.namespace,
        "labels": common_labels(spec),
        "ownerReferences": [owner_reference(spec)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def render_configmap(spec: ServedModelSpec, track: str = "stable") -> dict[str, Any]:
    # The labels TF Serving is given, so the next reconcile knows which label would move (see labels.py).
    labels = {ANNOTATION_LABELS: json.dumps(spec.version_labels, sort_keys=True)}
    return _stamp(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata(spec, names(spec, track)["configmap"], labels),
            "data": _config_files(spec),
        }
    )


def _config_files(spec: ServedModelSpec) -> dict[str, str]:
    files = {MODEL_CONFIG_FILE: render_model_config(spec)}
    if spec.batching is not None:
        files[BATCHING_FILE] = render_batching_config(spec)
    if prometheus_enabled(spec):
        files[MONITORING_FILE] = render_monitoring_config(spec)
    return files


def restart_checksum(configmap: dict[str, Any]) -> str:
    """Hash of the config files TF Serving reads only at start-up (none of the hot-reloaded ones)."""
    return _hash({k: v for k, v in configmap["data"].items() if k not in HOT_RELOADED_KEYS})


def server_args(spec: ServedModelSpec) -> list[str]:
    args = [
        f"--port={spec.grpc_port}",
        f"--rest_api_port={spec.rest_port}",  # TF Serving's default is 0: REST off
        f"--model_config_file={CONFIG_MOUNT}/{MODEL_CONFIG_FILE}",
        # TF Serving's default is 0: read once. Polling is how policy and label edits apply without restarts.
        f"--model_config_file_poll_wait_seconds={spec.config_poll_seconds}",
        f"--file_system_poll_wait_seconds={spec.fs_poll_seconds}",
    ]
    if spec.version_labels:
        # Labels in the first config would otherwise fail start-up while their versions load (ref. 4.2).
        args.append("--allow_version_labels_for_unavailable_models")
    if spec.batching is not None:
        # The file alone is an error without the flag (reference 3).
        args += ["--enable_batching", f"--batching_parameters_file={CONFIG_MOUNT}/{BATCHING_FILE}"]
    if prometheus_enabled(spec):
        args.append(f"--monitoring_config_file={CONFIG_MOUNT}/{MONITORING_FILE}")
    return args + list(spec.extra_args)


def image(spec: ServedModelSpec) -> str:
    """The pinned default, or its -gpu variant for GPU pods; a user's choice always wins."""
    if spec.image_set or not spec.gpus:
        return spec.image
    return f"{spec.image}-gpu"


def tolerations(spec: ServedModelSpec) -> list[dict[str, Any]]:
    """The user's, plus one for GPU nodes' usual nvidia.com/gpu taint when GPUs are asked for."""
    result = [dict(t) for t in spec.tolerations]
    if spec.gpus and not any(t.get("key") == GPU_RESOURCE for t in result):
        result.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return result


def _probes(spec: ServedModelSpec) -> dict[str, Any]:
    # The status URL answers 200 even when no version is AVAILABLE; the metadata URL answers 404 until a
    # version is servable, so it is the readiness signal (reference 1.4, 1.5).
    servable = {"path": f"/v1/models/{spec.model_name}/metadata", "port": "rest"}
    period = 10
    return {
        "startupProbe": {
            "httpGet": servable,
            "periodSeconds": period,
            "timeoutSeconds": 5,
            "failureThreshold": max(1, spec.startup_timeout_seconds // period),
        },
        "readinessProbe": {
            "httpGet": servable,
            "periodSeconds": 5,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        # Once started, the status URL answers 200 for as long as the server knows the model (its states
        # are never forgotten), so a failure means the REST server itself is stuck.
        "livenessProbe": {
            "httpGet": {"path": f"/v1/models/{spec.model_name}", "port": "rest"},
            "periodSeconds": 15,
            "timeoutSeconds": 5,
            "failureThreshold": 4,
        },
    }


def restricted_container_security() -> dict[str, Any]:
    """What Pod Security `restricted` asks of a container, plus a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def restricted_pod_security(user: int) -> dict[str, Any]:
    """Non-root as `user` (whose group owns the mounted volumes), RuntimeDefault seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": user,
        "fsGroup": user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_identity(spec: ServedModelSpec) -> dict[str, Any]:
    """The ServiceAccount a model server or export pod runs as, without its API token unless the spec
    asks for it: neither TF Serving nor the exporter calls the Kubernetes API."""
    identity: dict[str, Any] = {"automountServiceAccountToken": spec.automount_token}
    if spec.service_account_name:
        identity["serviceAccountName"] = spec.service_account_name
    return identity


def render_deployment(
    spec: ServedModelSpec, configmap: dict[str, Any], track: str = "stable", image_mount: str = MODELCAR
) -> dict[str, Any]:
    """The model server Deployment; ``image_mount``: how a storage.image reaches the pod (model_image.py)."""
    pod_annotations = {**spec.pod_annotations, ANNOTATION_RESTART_CHECKSUM: restart_checksum(configmap)}
    container: dict[str, Any] = {
        "name": SERVER_CONTAINER,
        "image": image(spec),
        "imagePullPolicy": spec.image_pull_policy,
        # The image's entrypoint is a bash script that does not exec; run the server directly.
        "command": [TF_SERVING_BINARY],
        "args": server_args(spec),
        "ports": [
            {"name": "grpc", "containerPort": spec.grpc_port, "protocol": "TCP"},
            {"name": "rest", "containerPort": spec.rest_port, "protocol": "TCP"},
        ],
        **_probes(spec),
        # A terminating pod stays in the Service's endpoints until the endpoints controller and every
        # kube-proxy have caught up: keep serving that long before the server gets SIGTERM, so a roll drops
        # no request (the kubelet's own sleep: no binary needed in the image).
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": restricted_container_security(),
    }
    if spec.env:
        container["env"] = [dict(e) for e in spec.env]
    if spec.resources:
        container["resources"] = {k: dict(v) for k, v in spec.resources.items()}

    pod_spec: dict[str, Any] = {
        "containers": [container],
        "securityContext": restricted_pod_security(RUN_AS_USER),
        "volumes": [
            {"name": "config", "configMap": {"name": configmap["metadata"]["name"]}},
            {"name": "tmp", "emptyDir": {}},
        ],
        "enableServiceLinks": False,
    }
    if spec.s3 is not None:
        parts = object_storage.pod_parts(spec, restricted_container_security(), spec.image_pull_policy)
        container["volumeMounts"].insert(0, parts["server_mount"])
        pod_spec["volumes"].insert(0, parts["volume"])
        pod_spec["initContainers"] = parts["init_containers"]
    elif spec.model_image is None:
        container["volumeMounts"].insert(
            0, {"name": "models", "mountPath": MODEL_MOUNT, "readOnly": spec.claim_read_only}
        )
        pod_spec["volumes"].insert(
            0,
            {
                "name": "models",
                "persistentVolumeClaim": {"claimName": spec.claim_name, "readOnly": spec.claim_read_only},
            },
        )
    else:
        parts = model_image.pod_parts(spec, image_mount)
        container["volumeMounts"].insert(0, parts["server_mount"])
        pod_spec["volumes"][:0] = parts["volumes"]
        if parts["init_containers"]:
            pod_spec["initContainers"] = parts["init_containers"]
        pod_spec.update(parts["pod"])
        if spec.model_image.pull_secrets:
            pod_spec["imagePullSecrets"] = [{"name": n} for n in spec.model_image.pull_secrets]
    pod_spec.update(pod_identity(spec))
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if tolerations(spec):
        pod_spec["tolerations"] = tolerations(spec)
    if spec.affinity:
        pod_spec["affinity"] = dict(spec.affinity)

    return _stamp(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _metadata(spec, names(spec, track)["deployment"]),
            "spec": {
                **({} if spec.autoscaling else {"replicas": spec.replicas}),  # the HPA owns it otherwise
                "selector": {"matchLabels": selector_labels(spec, track)},
                # Keep serving while new pods load their models: never drop below the desired count.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {
                    "metadata": {
                        "labels": {**spec.pod_labels, **common_labels(spec), LABEL_TRACK: track},
                        "annotations": pod_annotations,
                    },
                    "spec": pod_spec,
                },
            },
        }
    )


def render_service(spec: ServedModelSpec, track: str | None = None) -> dict[str, Any]:
    """The model's Service (both tracks), or with `track` a ClusterIP Service of one track only."""
    name = names(spec)["service"] if track is None else track_service_name(spec, track)
    annotations = _service_annotations(spec) if track is None else {}
    return _stamp(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(spec, name, annotations),
            "spec": {
                "type": spec.service_type if track is None else "ClusterIP",
                "selector": selector_labels(spec, track),
                "ports": [
                    {
                        "name": "grpc",
                        "port": spec.grpc_port,
                        "targetPort": "grpc",
                        "protocol": "TCP",
                        "appProtocol": "grpc",
                    },
                    {
                        "name": "rest",
                        "port": spec.rest_port,
                        "targetPort": "rest",
                        "protocol": "TCP",
                        "appProtocol": "http",
                    },
                ],
            },
        }
    )


def sync_service_name(spec: ServedModelSpec) -> str:
    return child_name(spec.name, "sync")


def render_sync_service(spec: ServedModelSpec) -> dict[str, Any]:
    """With storage.s3: reaches the sync sidecars, ready or not (object_storage.py), for the operator."""
    return _stamp(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(spec, sync_service_name(spec)),
            "spec": {
                "type": "ClusterIP",
                "selector": selector_labels(spec),
                # A pod that cannot sync never gets ready, and it is the one whose report matters.
                "publishNotReadyAddresses": True,
                "ports": [
                    {
                        "name": "sync",
                        "port": SYNC_PORT,
                        # by number: a named port is looked up in the pod's containers, not its sidecars
                        "targetPort": SYNC_PORT,
                        "protocol": "TCP",
                        "appProtocol": "http",
                    }
                ],
            },
        }
    )


def _service_annotations(spec: ServedModelSpec) -> dict[str, str]:
    annotations = dict(spec.service_annotations)
    if prometheus_enabled(spec):
        assert spec.monitoring is not None
        annotations.update(
            {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(spec.rest_port),
                "prometheus.io/path": spec.monitoring.path,
            }
        )
    return annotations


def render_hpa(spec: ServedModelSpec) -> dict[str, Any]:
    scaling = spec.autoscaling
    assert scaling is not None
    metrics = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": scaling.target_cpu},
            },
        },
        *[dict(m) for m in scaling.metrics],
    ]
    return _stamp(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _metadata(spec, names(spec)["deployment"]),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": names(spec)["deployment"],
                },
                "minReplicas": scaling.min_replicas,
                "maxReplicas": scaling.max_replicas,
                "metrics": metrics,
            },
        }
    )


def render_pdb(spec: ServedModelSpec) -> dict[str, Any]:
    """Voluntary evictions (node drains) take one model server at a time, so serving never stops."""
    return _stamp(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _metadata(spec, names(spec)["deployment"]),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(spec)}},
        }
    )


def render_service_monitor(spec: ServedModelSpec) -> dict[str, Any]:
    assert spec.monitoring is not None
    return _stamp(
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": _metadata(spec, names(spec)["service"]),
            "spec": {
                "selector": {"matchLabels": selector_labels(spec)},
                "endpoints": [
                    {"port": "rest", "path": spec.monitoring.path, "interval": spec.monitoring.interval}
                ],
            },
        }
    )


def render(
    spec: ServedModelSpec, service_monitor_api: bool = False, image_mount: str = MODELCAR
) -> list[dict[str, Any]]:
    """All children, in the order they should be applied (the Deployment mounts the ConfigMap).

    `service_monitor_api`: whether the cluster serves monitoring.coreos.com/v1 ServiceMonitors.
    `image_mount`: how a storage.image reaches the pods, as the cluster allows (model_image.choose_mount).
    """
    stable = spec.stable_view() if spec.canary is not None else spec
    configmap = render_configmap(stable)
    objects = [configmap, render_service(spec)]
    if spec.s3 is not None:
        objects.append(render_sync_service(spec))
    if spec.autoscaling is not None:
        objects.append(render_hpa(spec))
    if spec.min_replicas > 1:
        objects.append(render_pdb(spec))
    if (
        service_monitor_api
        and prometheus_enabled(spec)
        and spec.monitoring
        and spec.monitoring.service_monitor
    ):
        objects.append(render_service_monitor(spec))
    deployments = [render_deployment(stable, configmap, image_mount=image_mount)]
    if spec.canary is not None:
        canary = spec.canary_view()
        canary_config = render_configmap(canary, "canary")
        objects += [canary_config, render_service(spec, "stable"), render_service(spec, "canary")]
        deployments.append(render_deployment(canary, canary_config, "canary", image_mount))
    # Pods last: when the API server refuses any other child, no model server starts half-configured.
    objects += deployments
    return objects


def endpoints(spec: ServedModelSpec) -> dict[str, str]:
    host = f"{names(spec)['service']}.{spec.namespace}.svc"
    return {
        "rest": f"http://{host}:{spec.rest_port}/v1/models/{spec.model_name}",
        "grpc": f"{host}:{spec.grpc_port}",
    }
