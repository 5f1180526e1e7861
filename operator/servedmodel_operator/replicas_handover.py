"""Handing a Deployment's replicas over to the HorizontalPodAutoscaler without dropping them.

With server-side apply, a field the operator applied and then stops applying is removed, and a Deployment
without `spec.replicas` is defaulted to 1: turning autoscaling on would scale a running model server down
to one pod until the HPA's first sync. The Kubernetes documentation's hand-over (server-side apply,
"Transferring ownership"): first apply only `spec.replicas`, at its current value, as a second field
manager; then apply the object without it. The field keeps an owner throughout and keeps its value; the
HPA takes it over on its first scale.
"""

from __future__ import annotations

from typing import Any

from .constants import FIELD_MANAGER


def owns_replicas(live: dict[str, Any], manager: str = FIELD_MANAGER) -> bool | None:
    """Whether `manager` applied spec.replicas (None: the cache holds no managedFields to tell)."""
    entries = (live.get("metadata") or {}).get("managedFields")
    if entries is None:
        return None
    return any(
        e.get("manager") == manager
        and e.get("operation") == "Apply"
        and "f:replicas" in ((e.get("fieldsV1") or {}).get("f:spec") or {})
        for e in entries
    )


def handover(desired: dict[str, Any], live: dict[str, Any] | None) -> dict[str, Any] | None:
    """The replicas-only object to apply first, when `desired` stops setting replicas that the operator
    set until now; None when there is nothing to hand over."""
    if desired["kind"] != "Deployment" or "replicas" in desired["spec"] or live is None:
        return None
    replicas = (live.get("spec") or {}).get("replicas")
    if replicas is None or owns_replicas(live) is False:
        return None
    meta = desired["metadata"]
    return {
        "apiVersion": desired["apiVersion"],
        "kind": "Deployment",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": replicas},
    }
