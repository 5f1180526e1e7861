"""The operator's few writes to the Kubernetes API, over plain HTTP with `requests`.

The `kubernetes` package only finds the credentials (in-cluster or a kubeconfig); the requests themselves
are a handful of REST calls (server-side apply, a status merge patch, events), which stay the same across
client versions and are easy to count in tests.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

from . import metrics
from .constants import FIELD_MANAGER, OPERATOR_NAME, PLURAL

log = logging.getLogger(__name__)

_PATHS = {
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps/{name}",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services/{name}",
    ("v1", "PersistentVolumeClaim"): "/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
    ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
    ): "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{name}",
    ("policy/v1", "PodDisruptionBudget"): "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{name}",
    (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    ): "/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors/{name}",
}


class ApiError(Exception):
    """A failed API call, with the server's own message."""

    def __init__(self, status: int, message: str, reason: str = ""):
        super().__init__(f"{status} {reason}: {message}".strip())
        self.status, self.message, self.reason = status, message, reason

    @property
    def permanent(self) -> bool:
        """The request itself is wrong (retrying the same object cannot help); 409/429/5xx are transient,
        except the 500s with which the API server refuses content it cannot even convert to the object's
        type (a free-form field of the wrong shape): those never go away on retry."""
        if self.status == 500:
            return any(
                text in self.message for text in ("failed to create typed patch object", "failed to convert")
            )
        return 400 <= self.status < 500 and self.status not in (408, 409, 429)

    @property
    def namespace_terminating(self) -> bool:
        """The namespace is being deleted: nothing new may be created in it, and its content goes with it."""
        return self.status == 403 and "because it is being terminated" in self.message

    @property
    def forbidden(self) -> bool:
        """Missing rights: worth reporting, and worth retrying, since an administrator fixes RBAC without
        touching the ServedModel (and a new binding takes a moment to reach the authorizer)."""
        return self.status in (401, 403)


@dataclass
class Credentials:
    server: str
    verify: str | bool
    token: str | None = None
    cert: tuple[str, str] | None = None
    refresh: Any = None  # the kubernetes Configuration, when its token can rotate


def load_credentials(kubeconfig: str | None = None) -> Credentials:
    """In-cluster service account when there is one, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    from kubernetes import client, config

    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    token = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
    if token and token.lower().startswith("bearer "):
        token = token[7:]
    verify: str | bool = cfg.ssl_ca_cert or cfg.verify_ssl
    cert = (cfg.cert_file, cfg.key_file) if cfg.cert_file and cfg.key_file else None
    return Credentials(server=cfg.host, verify=verify, token=token, cert=cert, refresh=cfg)


@dataclass
class KubeApi:
    creds: Credentials
    timeout: float = 30.0
    user_agent: str = OPERATOR_NAME
    calls: Counter = field(default_factory=Counter)  # (method, kind) -> count, for tests and metrics
    _local: threading.local = field(default_factory=threading.local)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # REQUESTS_CA_BUNDLE and proxies are for the internet, not the cluster
            self._local.session = session
        return session

    def _token(self) -> str | None:
        cfg = self.creds.refresh
        if cfg is not None and getattr(cfg, "refresh_api_key_hook", None):
            cfg.refresh_api_key_hook(cfg)  # in-cluster tokens are rotated on disk
            token = cfg.api_key.get("authorization") or self.creds.token
            return token[7:] if token and token.lower().startswith("bearer ") else token
        return self.creds.token

    def request(
        self,
        method: str,
        path: str,
        kind: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            headers["Content-Type"] = content_type
        self.calls[(method, kind)] += 1
        resp = self._session().request(
            method,
            self.creds.server + path,
            params=params,
            data=json.dumps(body) if body is not None else None,
            headers=headers,
            timeout=self.timeout,
            verify=self.creds.verify,
            cert=self.creds.cert,
        )
        metrics.API_REQUESTS.labels(method, kind, str(resp.status_code)).inc()
        if resp.status_code >= 400:
            try:
                payload = resp.json()
                raise ApiError(resp.status_code, payload.get("message", resp.text), payload.get("reason", ""))
            except ValueError:
                raise ApiError(resp.status_code, resp.text) from None
        return resp.json() if resp.content else {}

    def apply(
        self, obj: dict[str, Any], dry_run: bool = False, field_manager: str = FIELD_MANAGER
    ) -> dict[str, Any]:
        """Server-side apply as the operator's one field manager, taking over fields others changed.
        `dry_run`: the API server admits and validates it, and stores nothing. Another `field_manager`
        (the autoscaler hand-over) never forces: a conflict means someone else owns the field already."""
        meta = obj["metadata"]
        path = _PATHS[(obj["apiVersion"], obj["kind"])].format(ns=meta["namespace"], name=meta["name"])
        params = {
            "fieldManager": field_manager,
            "force": "true" if field_manager == FIELD_MANAGER else "false",
        }
        if dry_run:
            params["dryRun"] = "All"
        return self.request(
            "PATCH",
            path,
            obj["kind"],
            body=obj,
            content_type="application/apply-patch+yaml",  # JSON is YAML
            params=params,
        )

    def delete(self, obj: dict[str, Any]) -> None:
        """Delete a child the spec no longer asks for; already gone is fine."""
        meta = obj["metadata"]
        path = _PATHS[(obj["apiVersion"], obj["kind"])].format(ns=meta["namespace"], name=meta["name"])
        try:
            self.request("DELETE", path, obj["kind"], params={"propagationPolicy": "Background"})
        except ApiError as exc:
            if exc.status != 404:
                raise

    def serves(self, group_version: str, plural: str) -> bool:
        """Whether the API server serves this resource (API discovery; 404 when the group is absent)."""
        try:
            resources = self.request("GET", f"/apis/{group_version}", "discovery").get("resources") or []
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return any(r.get("name") == plural for r in resources)

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{namespace}/pods"
        return self.request("GET", path, "Pod", params={"labelSelector": label_selector}).get("items") or []

    def patch_status(
        self, group: str, version: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> None:
        path = f"/apis/{group}/{version}/namespaces/{namespace}/{PLURAL}/{name}/status"
        self.request("PATCH", path, "status", body=patch, content_type="application/merge-patch+json")

    def create_event(self, event: dict[str, Any]) -> dict[str, Any]:
        namespace = event["metadata"]["namespace"]
        return self.request("POST", f"/api/v1/namespaces/{namespace}/events", "Event", body=event)

    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        path = f"/api/v1/namespaces/{namespace}/events/{name}"
        return self.request("PATCH", path, "Event", body=patch, content_type="application/merge-patch+json")
