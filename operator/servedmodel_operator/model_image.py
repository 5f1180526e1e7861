"""spec.storage.image: how a model server pod gets the model out of an OCI image, and what its pods say.

Two ways, picked per cluster (``choose_mount``), never asked of the user:

- ``imageVolume``: a ``volumes[].image`` volume (Kubernetes' ImageVolume feature) mounted read-only at
  /models/root. Nothing runs from the image and nothing is copied. It needs the feature gate on the API
  server and kubelets, and a runtime that mounts images (containerd 2.1+, CRI-O 1.31+).
- ``modelcar`` (everywhere else): the image runs as a native sidecar (an init container with
  ``restartPolicy: Always``, so it is running before the server starts and stops after it) in a pod that
  shares its process namespace. Its one program (``servedmodel-export`` puts a 294-byte static one in
  every model image) links ``<shared emptyDir>/root`` to ``/proc/<its pid>/root``; the server mounts that
  emptyDir at /models, so /models/root is the image's root, read through the kernel, not copied. Both
  run as the same non-root user, which is what reading another process's root needs.

An init container that copies the model into an emptyDir would also work everywhere, but it copies the
whole model at every pod start and doubles its disk use: the modelcar reads the image in place, so it is
the fallback.

The pods are read (one LIST, only while a rollout is under way or the served digest is unknown) for the
digest each one runs (its model container's ``imageID``) and for pull failures, which become a condition
with the kubelet's own message instead of a silent ImagePullBackOff.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .constants import MODEL_IMAGE_ROOT, MODEL_MOUNT, RUN_AS_USER
from .spec import ServedModelSpec

MODELCAR, IMAGE_VOLUME = "modelcar", "imageVolume"
MOUNTS = (MODELCAR, IMAGE_VOLUME)
CONTAINER = "model"  # the modelcar sidecar's name
LINK_VOLUME = "model-link"
IMAGE_VOLUME_NAME = "model-image"
MODELCAR_PROGRAM = "/servedmodel/modelcar"  # servedmodel_exporter.oci.modelcar.PATH
MODELCAR_LINK_DIR = "/servedmodel/link"  # where the program writes its link (same module)
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")
NOT_FOUND = re.compile(r"not found|manifest unknown|name unknown|404", re.IGNORECASE)
# Runtimes that mount images as volumes (containerd 2.1+, CRI-O 1.31+), from node.status.nodeInfo.
_RUNTIME = re.compile(r"^(containerd|cri-o)://v?(\d+)\.(\d+)")
_MIN_RUNTIME = {"containerd": (2, 1), "cri-o": (1, 31)}


def runtime_mounts_images(runtime_version: str) -> bool:
    """Whether a node's container runtime (``containerd://1.6.20``) can mount an image volume."""
    match = _RUNTIME.match(runtime_version or "")
    if match is None:
        return False
    return (int(match.group(2)), int(match.group(3))) >= _MIN_RUNTIME[match.group(1)]


def choose_mount(gate_on: bool, runtimes: list[str] | None) -> tuple[str, str]:
    """(mount, why). ``runtimes``: every node's runtime version, None when nodes cannot be read."""
    if not gate_on:
        return MODELCAR, "the API server drops image volumes (ImageVolume feature gate off)"
    if runtimes is None:
        return IMAGE_VOLUME, "the ImageVolume feature gate is on (node runtimes not readable: trusted)"
    old = sorted({r for r in runtimes if not runtime_mounts_images(r)})
    if old:
        return MODELCAR, f"node runtimes {', '.join(old)} cannot mount images (containerd 2.1+, CRI-O 1.31+)"
    return IMAGE_VOLUME, "the ImageVolume feature gate is on and every node's runtime mounts images"


def probe_deployment(namespace: str) -> dict[str, Any]:
    """A Deployment with an image volume, for a server-side dry-run create: the API server drops
    ``volumes[].image`` when the ImageVolume feature gate is off, so its answer tells whether it is on."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "servedmodel-imagevolume-probe", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"probe": "imagevolume"}},
            "template": {
                "metadata": {"labels": {"probe": "imagevolume"}},
                "spec": {
                    "containers": [{"name": "probe", "image": "probe.invalid/probe:1"}],
                    "volumes": [{"name": "probe", "image": {"reference": "probe.invalid/probe:1"}}],
                },
            },
        },
    }


def gate_on_from_probe(answer: dict[str, Any]) -> bool:
    volumes = (((answer.get("spec") or {}).get("template") or {}).get("spec") or {}).get("volumes") or []
    return any("image" in v for v in volumes)


# -- rendering (pure) ---------------------------------------------------------------------------------


def pod_parts(spec: ServedModelSpec, mount: str) -> dict[str, Any]:
    """What the pod spec gets for the model image: volumes, the server's mount, init containers, extras."""
    image = spec.model_image
    assert image is not None
    if mount == IMAGE_VOLUME:
        return {
            "volumes": [
                {
                    "name": IMAGE_VOLUME_NAME,
                    "image": {"reference": image.reference, "pullPolicy": image.pull_policy},
                }
            ],
            "server_mount": {"name": IMAGE_VOLUME_NAME, "mountPath": MODEL_IMAGE_ROOT, "readOnly": True},
            "init_containers": [],
            "pod": {},
        }
    sidecar = {
        "name": CONTAINER,
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "command": [MODELCAR_PROGRAM],
        "restartPolicy": "Always",  # a native sidecar: started before the server, stopped after it
        "volumeMounts": [{"name": LINK_VOLUME, "mountPath": MODELCAR_LINK_DIR}],
        "resources": {
            "requests": {"cpu": "1m", "memory": "4Mi"},
            "limits": {"memory": "16Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,  # the server's user: reading /proc/<pid>/root needs the same user
            "runAsGroup": RUN_AS_USER,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "volumes": [{"name": LINK_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}],
        "server_mount": {"name": LINK_VOLUME, "mountPath": MODEL_MOUNT, "readOnly": True},
        "init_containers": [sidecar],
        "pod": {"shareProcessNamespace": True},
    }


# -- observing the pods (pure) ------------------------------------------------------------------------


@dataclass(frozen=True)
class PodsView:
    digests: dict[str, int]  # image digest -> ready pods serving it
    failure: tuple[str, str] | None  # (reason, message) of a pod that cannot pull the model image


def _digest(image_id: str) -> str:
    return image_id.rsplit("@", 1)[1] if "@" in image_id else ""


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def observe(pods: list[dict[str, Any]], reference: str) -> PodsView:
    """Digests served by ready pods (from the model container's imageID) and the first pull failure of a
    pod that asks for ``reference`` (pods of an older reference, still serving during a roll, are not
    failures of this one)."""
    digests: Counter[str] = Counter()
    failure = None
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
        digest = _served_digest(statuses)
        if digest and _ready(pod):
            digests[digest] += 1
        if failure is not None:
            continue
        for cs in statuses:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            ours = cs.get("name") == CONTAINER and _same_image(cs.get("image", ""), reference)
            # An image volume's pull failure shows on the server container, naming the image.
            if not (ours or reference in (waiting.get("message") or "")):
                continue
            if waiting.get("reason") in PULL_FAILURES:
                failure = _failure(pod, waiting, reference)
                break
    return PodsView(dict(digests), failure)


def _served_digest(statuses: list[dict[str, Any]]) -> str:
    """The modelcar's imageID, or an image volume's ``imageRef`` in the server's volume mount statuses
    (Kubernetes reports it where its version has ImageVolumeStatus)."""
    for cs in statuses:
        if cs.get("name") == CONTAINER:
            return _digest(cs.get("imageID") or "")
    for cs in statuses:
        for mount in cs.get("volumeMounts") or []:
            if mount.get("name") == IMAGE_VOLUME_NAME:
                ref = (mount.get("image") or {}).get("imageRef") or ""
                return _digest(ref) or (ref if ref.startswith("sha256:") else "")
    return ""


def _same_image(reported: str, reference: str) -> bool:
    """The kubelet reports images normalized (docker.io/library/x:1 for x:1); compare without that."""

    def norm(ref: str) -> str:
        for prefix in ("docker.io/library/", "docker.io/"):
            if ref.startswith(prefix):
                return ref[len(prefix) :]
        return ref

    return norm(reported) == norm(reference)


def _failure(pod: dict[str, Any], waiting: dict[str, Any], reference: str) -> tuple[str, str]:
    message = (waiting.get("message") or "").strip()
    reason = waiting.get("reason", "")
    if reason == "InvalidImageName":
        code = "InvalidModelImage"
    elif reason == "ErrImageNeverPull":
        code = "ModelImageNotPresent"
    elif NOT_FOUND.search(message):
        code = "ModelImageNotFound"
    else:
        code = "ModelImagePullFailed"
    return (
        code,
        f"pod {pod['metadata']['name']} cannot pull the model image {reference} ({reason}): "
        f"{message or 'no message from the kubelet'}",
    )
