"""Whether a claim's access modes let every pod of a ServedModel mount it, and what to do when not.

The model servers mount the claim (read-only by default) and an export Job mounts it read-write. A
ReadWriteOnce volume attaches to one node at a time: pods scheduled elsewhere stay ContainerCreating with a
Multi-Attach error. ReadWriteOncePod allows one pod in the whole cluster. ReadOnlyMany cannot be written by
an export. This is judged from the spec and the claim alone (pure), before any pod gets stuck.
"""

from __future__ import annotations

from collections.abc import Iterable

from .spec import ServedModelSpec

CONDITION = "StorageConflict"  # abnormal-true: present (True) only when the access modes do not fit
SINGLE_NODE_KEYS = ("kubernetes.io/hostname",)


def _server_pods(spec: ServedModelSpec) -> int:
    most = spec.autoscaling.max_replicas if spec.autoscaling else spec.replicas
    return most + (spec.canary.replicas if spec.canary else 0)


def access_conflict(spec: ServedModelSpec, access_modes: Iterable[str]) -> tuple[str, str] | None:
    """(reason, message with what to do) when the claim cannot serve this ServedModel; else None."""
    modes = set(access_modes)
    if not modes or "ReadWriteMany" in modes:
        return None
    claim = f"PersistentVolumeClaim {spec.claim_name!r}"
    servers = _server_pods(spec)
    exporting = spec.export is not None
    pods = f"{servers} model server pod{'s' if servers != 1 else ''}" + (
        " and the export Job" if exporting else ""
    )
    if exporting and modes <= {"ReadOnlyMany"}:
        return (
            "ReadOnlyClaimForExport",
            f"{claim} is ReadOnlyMany, but spec.export publishes versions onto it: the export Job cannot "
            "write. Use a ReadWriteMany claim, or publish elsewhere with the exporter and drop spec.export.",
        )
    if "ReadOnlyMany" in modes and not exporting:
        return None  # read-only model servers on any number of nodes
    if modes == {"ReadWriteOncePod"}:
        if servers + exporting <= 1:
            return None
        return (
            "ReadWriteOncePodClaim",
            f"{claim} is ReadWriteOncePod: one pod in the cluster may use it, but {pods} need it; the others "
            "stay Pending. Use a ReadWriteMany claim (NFS, CephFS, or a CSI driver that offers it), or "
            "ReadOnlyMany for serving only.",
        )
    if servers + exporting <= 1 or any(k in spec.node_selector for k in SINGLE_NODE_KEYS):
        return None
    return (
        "ReadWriteOnceClaim",
        f"{claim} is ReadWriteOnce: it attaches to one node at a time, and {pods} use it; pods on "
        "another node stay ContainerCreating (Multi-Attach error). Use a ReadWriteMany claim (NFS, CephFS, "
        "or a CSI driver that offers it), or keep every pod on one node (spec.nodeSelector "
        "kubernetes.io/hostname).",
    )
