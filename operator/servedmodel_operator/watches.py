"""What the operator watches, narrowed on the API server's side so that its memory and work do not grow
with everything else in the cluster.

kopf lists and watches a whole resource and filters handlers on the client; an operator in a shared
cluster would then receive (and parse) every ConfigMap, Deployment and Job of every team. Server-side
selectors (kopf's `settings.watching.label_selectors` / `field_selectors`, kopf >= 1.45) make the API
server send only the operator's own children and the one CRD it reacts to. PVCs are the users' own objects
and carry no label of ours: their watch cannot be narrowed, so their cache keeps a name and nothing else.
"""

from __future__ import annotations

from typing import Any

from .constants import LABEL_MANAGED_BY, OPERATOR_NAME

# kind -> (API group, version, plural) of every child the operator creates (and labels as its own).
CHILD_RESOURCES = {
    "ConfigMap": ("", "v1", "configmaps"),
    "Service": ("", "v1", "services"),
    "Deployment": ("apps", "v1", "deployments"),
    "Job": ("batch", "v1", "jobs"),
    "HorizontalPodAutoscaler": ("autoscaling", "v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy", "v1", "poddisruptionbudgets"),
    "ServiceMonitor": ("monitoring.coreos.com", "v1", "servicemonitors"),
}
CHILD_SELECTOR = f"{LABEL_MANAGED_BY}={OPERATOR_NAME}"
SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"
CRDS = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")


def narrow(watching: Any) -> None:
    """Set the server-side selectors on kopf's `settings.watching`.

    The CRD watch (kopf's own resource discovery shares it) sees only the ServiceMonitor CRD, whose coming
    and going switches ServiceMonitors on and off; the ServedModel CRD must be installed before the
    operator starts (the Helm chart and dist/install.yaml do so), as for any controller.
    """
    if not hasattr(watching, "label_selectors") or not hasattr(watching, "field_selectors"):
        raise SystemExit(
            "servedmodel-operator needs kopf >= 1.45 (server-side watch selectors); "
            "install the versions pyproject.toml asks for"
        )
    for group, version, plural in CHILD_RESOURCES.values():
        watching.label_selectors[group, version, plural] = CHILD_SELECTOR
    watching.field_selectors[CRDS] = f"metadata.name={SERVICE_MONITOR_CRD}"


def cached_metadata(metadata: Any) -> dict[str, Any]:
    """The metadata a cache keeps: everything the reconcile reads, not the (large) managedFields."""
    return {k: v for k, v in metadata.items() if k != "managedFields"}
