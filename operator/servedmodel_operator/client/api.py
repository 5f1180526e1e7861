"""The Python API: call a ServedModel by name, read its status, list ServedModels.

    from servedmodel_operator.client import predict
    outputs = predict("resnet", [[1.0, 2.0, 3.0, 4.0]], namespace="vision")   # {"output_0": ndarray}

From outside the cluster requests go through the API server's service proxy with the kubeconfig's
credentials; inside a pod (KUBERNETES_SERVICE_HOST is set) straight to the Service. `via` forces one.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from . import grpc_call, rest
from .errors import UsageError
from .kubeapi import TIMEOUT, ApiServer, connect, in_cluster
from .resolve import Target, get_servedmodel, list_servedmodels, target_of
from .routes import DirectRoute, ProxyRoute, Route

Via = Literal["auto", "proxy", "direct"]
GRPC_THROUGH_PROXY = (
    "gRPC cannot go through the Kubernetes API server: its service proxy forwards HTTP/1.1 requests only, "
    "and gRPC needs HTTP/2. From outside the cluster use REST (the default; same model, same answers); "
    "in a pod, --grpc goes straight to the Service's grpc port; --via direct sends it to "
    "<service>.<namespace>.svc wherever that name resolves (a VPN into the cluster network)."
)


def _route_kind(via: Via) -> str:
    if via not in ("auto", "proxy", "direct"):
        raise UsageError(f"via must be auto, proxy or direct, not {via!r}")
    return ("direct" if in_cluster() else "proxy") if via == "auto" else via


def resolve(
    name: str, namespace: str | None = None, kubeconfig: str | None = None, context: str | None = None
) -> tuple[ApiServer, dict[str, Any], Target]:
    """The API session, the ServedModel object and where it is served."""
    api = connect(kubeconfig, context)
    sm = get_servedmodel(api, name, namespace or api.namespace)
    return api, sm, target_of(sm)


def predict(
    name: str,
    instances: Any,
    namespace: str | None = None,
    version: int | None = None,
    label: str | None = None,
    grpc: bool = False,
    signature_name: str = "serving_default",
    via: Via = "auto",
    kubeconfig: str | None = None,
    context: str | None = None,
    timeout: float = TIMEOUT,
) -> dict[str, np.ndarray]:
    """Ask ServedModel `name` for predictions on `instances` (TF Serving's row format: a list with one
    entry per example; {"input": value} objects for several inputs), from the latest version it serves,
    a `version` or a version `label`. Returns one array per output of the signature, by output name, in
    the signature's dtype. Raises a `ClientError` subclass (errors.py) when it cannot."""
    if version is not None and label:
        raise UsageError("give a version or a label, not both")
    kind = _route_kind(via)
    if grpc and kind == "proxy":
        raise UsageError(GRPC_THROUGH_PROXY)
    api, _, target = resolve(name, namespace, kubeconfig, context)
    if grpc:
        return grpc_call.predict(target, instances, version, label, signature_name, timeout)
    route: Route = ProxyRoute(api, target, timeout) if kind == "proxy" else DirectRoute(target, timeout)
    return rest.predict(route, target, instances, version, label, signature_name)


def status(
    name: str, namespace: str | None = None, kubeconfig: str | None = None, context: str | None = None
) -> dict[str, Any]:
    """The ServedModel object (spec and status) as the API server has it."""
    return resolve(name, namespace, kubeconfig, context)[1]


def list_models(
    namespace: str | None = None,
    all_namespaces: bool = False,
    kubeconfig: str | None = None,
    context: str | None = None,
) -> list[dict[str, Any]]:
    """The ServedModels of a namespace (the context's by default), or of every namespace."""
    api = connect(kubeconfig, context)
    return list_servedmodels(api, None if all_namespaces else (namespace or api.namespace))
