"""From a ServedModel's name to where its model server answers: its Service, ports and TF Serving model name.

The operator writes `status.endpoints` (`http://<service>.<namespace>.svc:<rest>/v1/models/<model>` and
`<service>.<namespace>.svc:<grpc>`); before it has, the same facts follow from the spec as the operator
renders them (the Service is named after the ServedModel, with ports named `grpc` and `rest`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from .errors import ForbiddenError, NotFoundError
from .kubeapi import ApiServer, api_error

GROUP, VERSION, PLURAL = "servedmodel.io", "v1alpha1", "servedmodels"
REST_PORT_NAME = "rest"  # the Service's port names (render.render_service)
GRPC_PORT_NAME = "grpc"


@dataclass(frozen=True)
class Target:
    """Where one ServedModel is served."""

    namespace: str
    name: str  # the ServedModel
    service: str
    model: str  # the name TF Serving serves it under: /v1/models/<model>
    rest_port: int
    grpc_port: int

    @property
    def host(self) -> str:
        """The Service's DNS name inside the cluster."""
        return f"{self.service}.{self.namespace}.svc"

    def proxy_path(self, path: str) -> str:
        """`path` (e.g. /v1/models/m:predict) through the API server's service proxy, to the `rest` port."""
        return f"/api/v1/namespaces/{self.namespace}/services/{self.service}:{REST_PORT_NAME}/proxy{path}"


def collection_path(namespace: str | None) -> str:
    where = f"/namespaces/{quote(namespace)}" if namespace else ""
    return f"/apis/{GROUP}/{VERSION}{where}/{PLURAL}"


def get_servedmodel(api: ApiServer, name: str, namespace: str) -> dict[str, Any]:
    resp = api.request("GET", f"{collection_path(namespace)}/{quote(name)}")
    if resp.status_code == 404:
        details = (resp.json().get("details") or {}) if _is_json(resp) else {}
        if details.get("name") == name:
            raise NotFoundError(
                f'no ServedModel "{name}" in namespace "{namespace}" '
                f"(`servedmodel list -n {namespace}` shows the ones there are)"
            )
        raise NotFoundError(
            f"the ServedModel API ({GROUP}/{VERSION}) is not installed in this cluster: install the operator"
        )
    if resp.status_code == 403:
        raise ForbiddenError(
            f"{api_error(resp, 'reading a ServedModel')}\nReading a ServedModel needs the verb `get` on "
            f'`servedmodels.servedmodel.io` in namespace "{namespace}"; ask a cluster admin for a Role.'
        )
    if resp.status_code >= 400:
        raise api_error(resp, f'reading ServedModel "{name}" in namespace "{namespace}"')
    return resp.json()


def list_servedmodels(api: ApiServer, namespace: str | None) -> list[dict[str, Any]]:
    resp = api.request("GET", collection_path(namespace))
    if resp.status_code == 404:
        raise NotFoundError(
            f"the ServedModel API ({GROUP}/{VERSION}) is not installed in this cluster: install the operator"
        )
    if resp.status_code >= 400:
        raise api_error(resp, "listing ServedModels")
    return resp.json().get("items") or []


def target_of(sm: dict[str, Any]) -> Target:
    """The Service, ports and model name of a ServedModel: from status.endpoints, else from its spec."""
    meta, spec = sm.get("metadata") or {}, sm.get("spec") or {}
    name, namespace = meta["name"], meta.get("namespace") or "default"
    ports = spec.get("ports") or {}
    service, model = name, spec.get("modelName") or name
    rest_port, grpc_port = int(ports.get("rest", 8501)), int(ports.get("grpc", 8500))
    endpoints = (sm.get("status") or {}).get("endpoints") or {}
    if endpoints.get("rest"):
        url = urlsplit(endpoints["rest"])
        if url.hostname and url.path.startswith("/v1/models/"):
            service = url.hostname.split(".")[0]
            rest_port = url.port or rest_port
            model = url.path[len("/v1/models/") :]
    if endpoints.get("grpc"):
        grpc_port = int(endpoints["grpc"].rsplit(":", 1)[1])
    return Target(namespace, name, service, model, rest_port, grpc_port)


def _is_json(resp: Any) -> bool:
    try:
        resp.json()
    except ValueError:
        return False
    return True
