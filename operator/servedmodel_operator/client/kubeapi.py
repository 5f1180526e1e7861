"""The user's way into the cluster: their kubeconfig (or a pod's ServiceAccount), as an HTTP session.

The kubernetes package only loads the credentials (tokens, client certificates, exec plugins, in-cluster
tokens); requests are made with `requests`, so the service proxy's raw answers (TF Serving's JSON, or the
API server's own Status) reach us unchanged, with every kubernetes client version the project allows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from .errors import ClientError, ForbiddenError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT = 30.0


def in_cluster() -> bool:
    """Running in a pod: Kubernetes sets KUBERNETES_SERVICE_HOST in every container."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


@dataclass
class ApiServer:
    """An authenticated session to one API server, and the namespace the user's context names."""

    host: str
    session: requests.Session
    namespace: str
    configuration: Any = None

    def _auth(self) -> dict[str, str]:
        # auth_settings() runs the refresh hooks (exec plugins, rotated in-cluster tokens) each time.
        if self.configuration is None:
            return {}
        bearer = (self.configuration.auth_settings() or {}).get("BearerToken") or {}
        return {"Authorization": bearer["value"]} if bearer.get("value") else {}

    def request(
        self, method: str, path: str, body: Any = None, timeout: float = TIMEOUT
    ) -> requests.Response:
        headers = {"Accept": "application/json", **self._auth()}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        try:
            # verify passed per request: requests lets $REQUESTS_CA_BUNDLE override a session's CA file.
            return self.session.request(
                method,
                self.host + path,
                data=data,
                headers=headers,
                timeout=timeout,
                verify=self.session.verify,
            )
        except requests.RequestException as exc:
            raise ClientError(f"cannot reach the Kubernetes API server at {self.host}: {exc}") from exc

    def get_json(self, path: str) -> dict[str, Any]:
        resp = self.request("GET", path)
        if resp.status_code >= 400:
            raise api_error(resp, f"GET {path}")
        return resp.json()


def connect(kubeconfig: str | None = None, context: str | None = None) -> ApiServer:
    """A session with the user's credentials: `kubeconfig` (or $KUBECONFIG, ~/.kube/config), or the pod's
    ServiceAccount when running in a pod with none of those given."""
    from kubernetes import config
    from kubernetes.client import Configuration

    cfg = Configuration()
    explicit = kubeconfig or os.environ.get("KUBECONFIG")
    token_file = SERVICE_ACCOUNT / "token"
    try:
        if not explicit and in_cluster() and token_file.exists():
            config.load_incluster_config(client_configuration=cfg)
            namespace = (SERVICE_ACCOUNT / "namespace").read_text().strip() or "default"
        else:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=cfg, persist_config=False
            )
            namespace = _context_namespace(kubeconfig, context)
    except config.ConfigException as exc:
        raise ClientError(f"no usable Kubernetes credentials: {exc}") from exc
    session = requests.Session()
    session.verify = cfg.ssl_ca_cert if cfg.verify_ssl and cfg.ssl_ca_cert else bool(cfg.verify_ssl)
    if cfg.cert_file and cfg.key_file:
        session.cert = (cfg.cert_file, cfg.key_file)
    if getattr(cfg, "proxy", None):
        session.proxies = {"https": cfg.proxy, "http": cfg.proxy}
    return ApiServer(cfg.host.rstrip("/"), session, namespace, cfg)


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    from kubernetes import config

    contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    chosen = next((c for c in contexts if c["name"] == context), None) if context else active
    return ((chosen or {}).get("context") or {}).get("namespace") or "default"


def status_of(resp: requests.Response) -> dict[str, Any] | None:
    """The API server's own `Status` object in an error answer, or None (then the body is someone else's,
    such as the model server's behind the service proxy)."""
    try:
        doc = resp.json()
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") == "Status" else None


def api_error(resp: requests.Response, what: str) -> ClientError:
    """A ClientError for an API server refusal; 401/403 explained, the rest with the server's message."""
    status = status_of(resp) or {}
    message = status.get("message") or resp.text.strip() or resp.reason
    if resp.status_code == 401:
        return ForbiddenError(
            "the Kubernetes API server did not accept your credentials (401 Unauthorized): "
            "log in again or check your kubeconfig's user"
        )
    if resp.status_code == 403:
        return ForbiddenError(f"the Kubernetes API server refused: {message}")
    return ClientError(f"{what}: {resp.status_code} {message}")
