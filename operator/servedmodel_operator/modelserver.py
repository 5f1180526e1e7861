"""What the model server itself says: TF Serving's REST status API, polled cheaply.

`GET /v1/models/<model>` answers with every version the server has seen and its state (reference 1.4):
200 even when nothing is AVAILABLE, END versions kept, a failed load as END with a non-OK status. The
operator asks often only while a ServedModel is changing, otherwise at a slow jittered period, with a
cap on concurrent requests and an exponential backoff for a server it cannot reach.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from . import metrics
from .spec import ServedModelSpec

FAST_SECONDS = 5.0  # while rolling out or right after a change
SLOW_SECONDS = 60.0  # steady state, jittered by +-20%
SETTLE_SECONDS = 120.0  # how long "right after a change" lasts
MAX_BACKOFF_SECONDS = 300.0
REQUEST_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class VersionState:
    version: int
    state: str  # START, LOADING, AVAILABLE, UNLOADING, END
    error_code: str = "OK"
    error_message: str = ""

    @property
    def failed(self) -> bool:
        return self.state == "END" and self.error_code != "OK"

    def to_status(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"version": self.version, "state": self.state}
        if self.failed:
            entry["error"] = f"{self.error_code}: {self.error_message}".strip()
        return entry


def parse_model_status(payload: dict[str, Any]) -> list[VersionState]:
    """GetModelStatusResponse in the protobuf JSON mapping: int64 versions are strings, enums are names."""
    versions = []
    for entry in payload.get("model_version_status") or []:
        status = entry.get("status") or {}
        versions.append(
            VersionState(
                version=int(entry.get("version", 0)),
                state=str(entry.get("state", "UNKNOWN")),
                error_code=str(status.get("error_code", "OK")),
                error_message=str(status.get("error_message", "")),
            )
        )
    return sorted(versions, key=lambda v: -v.version)


def serving_verdict(spec: ServedModelSpec, versions: list[VersionState]) -> tuple[bool, str, str]:
    """(ready, reason, message): are the versions the policy asks for AVAILABLE?"""
    available = sorted(v.version for v in versions if v.state == "AVAILABLE")
    policy = spec.version_policy
    if policy.kind == "specific":
        missing = [v for v in policy.versions if v not in available]
        if missing:
            states = {v.version: v.state for v in versions}
            detail = ", ".join(f"{v} is {states.get(v, 'not found')}" for v in missing)
            return False, "VersionsNotAvailable", f"Requested versions are not all AVAILABLE: {detail}."
        return True, "ModelServing", f"Serving versions {', '.join(map(str, available))}."
    if not available:
        loading = [str(v.version) for v in versions if v.state in ("START", "LOADING")]
        detail = f" (loading: {', '.join(loading)})" if loading else ""
        return False, "NoVersionAvailable", f"The model server has no AVAILABLE version{detail}."
    if policy.kind == "latest":
        live = [v for v in versions if v.state != "END"]
        wanted = sorted((v.version for v in live), reverse=True)[: policy.num_versions]
        pending = [v for v in wanted if v not in available]
        if pending:
            return (
                True,
                "ModelServing",
                (f"Serving versions {_join(available)}; loading {_join(pending)}."),
            )
    return True, "ModelServing", f"Serving versions {', '.join(map(str, available))}."


def _join(versions: list[int]) -> str:
    return ", ".join(map(str, versions))


@dataclass
class _Entry:
    versions: list[VersionState] | None = None
    error: str = ""
    next_poll: float = 0.0
    failures: int = 0
    fingerprint: str = ""
    changed_at: float = 0.0


@dataclass
class ModelServerPoller:
    """Per-ServedModel poll state; `poll` is called from reconciles and decides itself whether it is due."""

    url_template: str = "http://{service}.{namespace}.svc:{port}"
    max_concurrent: int = 8
    clock: Any = time.monotonic
    _entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    _semaphore: asyncio.Semaphore | None = None
    _session: requests.Session | None = None

    def url(self, spec: ServedModelSpec, service: str | None = None) -> str:
        base = self.url_template.format(
            service=service or spec.name, namespace=spec.namespace, port=spec.rest_port
        )
        return f"{base}/v1/models/{spec.model_name}"

    def forget(self, key: tuple[str, str]) -> None:
        for entry_key in [k for k in self._entries if k == key or (isinstance(k, tuple) and k[:2] == key)]:
            self._entries.pop(entry_key, None)

    async def poll(
        self, key: Any, spec: ServedModelSpec, fingerprint: str, busy: bool, service: str | None = None
    ) -> float:
        """Poll if due; returns seconds until the next poll is due. `busy`: rolling out or just changed."""
        entry = self._entries.setdefault(key, _Entry())
        now = self.clock()
        if fingerprint != entry.fingerprint:  # a new spec: ask now, whatever the schedule
            entry.fingerprint, entry.next_poll, entry.failures = fingerprint, 0.0, 0
            entry.changed_at = now
        busy = busy or now - entry.changed_at < SETTLE_SECONDS
        if now >= entry.next_poll:
            await self._fetch(entry, self.url(spec, service))
            if entry.error:
                entry.failures += 1
                delay = min(MAX_BACKOFF_SECONDS, FAST_SECONDS * 2 ** (entry.failures - 1))
            else:
                entry.failures = 0
                delay = FAST_SECONDS if busy else SLOW_SECONDS * random.uniform(0.8, 1.2)
            entry.next_poll = self.clock() + delay
        return max(0.0, entry.next_poll - self.clock())

    def observed(self, key: Any) -> tuple[list[VersionState] | None, str]:
        entry = self._entries.get(key)
        return (entry.versions, entry.error) if entry else (None, "")

    async def _fetch(self, entry: _Entry, url: str) -> None:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_concurrent)
        async with self._semaphore:
            try:
                entry.versions = await asyncio.to_thread(self._get, url)
                entry.error = ""
                metrics.MODEL_SERVER_REQUESTS.labels("ok").inc()
            except (requests.RequestException, ValueError) as exc:
                entry.error = f"cannot reach the model server: {exc.__class__.__name__}"
                metrics.MODEL_SERVER_REQUESTS.labels("unreachable").inc()
            except ModelNotFound:
                entry.versions, entry.error = [], ""  # up, but no version of the model found yet
                metrics.MODEL_SERVER_REQUESTS.labels("not_found").inc()

    def _get(self, url: str) -> list[VersionState]:
        if self._session is None:
            self._session = requests.Session()
            self._session.trust_env = False  # cluster-internal addresses: no proxies
        resp = self._session.get(url, timeout=REQUEST_TIMEOUT_SECONDS)
        if resp.status_code == 404:
            raise ModelNotFound(_error_text(resp))
        resp.raise_for_status()
        return parse_model_status(resp.json())


class ModelNotFound(Exception):
    """404 from the status API: the server does not know the model (no version found yet)."""


def _error_text(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("error", resp.text))
    except ValueError:
        return resp.text
