"""How an HTTP request reaches a model server's REST port.

- `ProxyRoute`: through the API server's service proxy, with the user's credentials, from anywhere the
  API server is reachable (a laptop): no port-forward, no exposed Service. Needs the `get` (GET) and
  `create` (POST) verbs on `services/proxy` in the namespace.
- `DirectRoute`: straight to the Service's DNS name, for clients running in the cluster (a pod).

Both return the model server's own answer; failures of the path itself become ClientErrors that say what
to do.
"""

from __future__ import annotations

from typing import Any, Protocol

import requests

from .errors import ClientError, ForbiddenError, NotReadyError
from .kubeapi import TIMEOUT, ApiServer, status_of
from .resolve import Target


class Route(Protocol):
    def send(self, method: str, path: str, body: Any = None) -> requests.Response: ...


class ProxyRoute:
    def __init__(self, api: ApiServer, target: Target, timeout: float = TIMEOUT):
        self.api, self.target, self.timeout = api, target, timeout

    def send(self, method: str, path: str, body: Any = None) -> requests.Response:
        t = self.target
        resp = self.api.request(method, t.proxy_path(path), body, timeout=self.timeout)
        status = status_of(resp)
        if status is None or resp.status_code < 400:
            return resp  # the model server's answer (TF Serving never answers with a Kubernetes Status)
        message = status.get("message") or resp.reason
        verb = "create" if method == "POST" else "get"
        if resp.status_code == 401:
            raise ForbiddenError(
                "the Kubernetes API server did not accept your credentials (401 Unauthorized): "
                "log in again or check your kubeconfig's user"
            )
        if resp.status_code == 403:
            raise ForbiddenError(
                f"the Kubernetes API server refused: {message}\n"
                f"Calling a ServedModel through the API server needs the verb `{verb}` on `services/proxy` "
                f'in namespace "{t.namespace}" (and `get` on `servedmodels.servedmodel.io`); ask a cluster '
                "admin for a Role with those rules, bound to you."
            )
        if resp.status_code in (502, 503) or (resp.status_code == 404 and status.get("details")):
            raise NotReadyError(
                f'ServedModel "{t.name}" in namespace "{t.namespace}" is not ready to answer: '
                f"{message} (Service {t.service}, port {t.rest_port})"
            )
        raise ClientError(f"the Kubernetes API server answered {resp.status_code}: {message}")


class DirectRoute:
    def __init__(self, target: Target, timeout: float = TIMEOUT, session: requests.Session | None = None):
        self.target, self.timeout = target, timeout
        self.session = session or requests.Session()
        self.session.trust_env = False  # a cluster address never goes through an HTTP proxy

    def send(self, method: str, path: str, body: Any = None) -> requests.Response:
        url = f"http://{self.target.host}:{self.target.rest_port}{path}"
        try:
            return self.session.request(method, url, json=body, timeout=self.timeout)
        except requests.ConnectionError as exc:
            raise NotReadyError(
                f'ServedModel "{self.target.name}" in namespace "{self.target.namespace}" is not reachable '
                f"at {url}: {_reason(exc)}"
            ) from exc
        except requests.Timeout as exc:
            raise NotReadyError(f"no answer from {url} within {self.timeout:.0f}s") from exc


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "..."
