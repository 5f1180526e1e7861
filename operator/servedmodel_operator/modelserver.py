"""What the model server itself says: TF Serving's REST status API, polled cheaply.

`GET /v1/models/<model>` answers with every version the server has seen and its state (reference 1.4):
200 even when nothing is AVAILABLE, END versions kept, a failed load as END with a non-OK status. The
operator asks often only while a ServedModel is changing, otherwise at a slow jittered period, with a
cap on concurrent requests and an exponential backoff for a server it cannot reach.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from . import metrics
from .object_storage import SyncState, parse_sync_state
from .spec import ServedModelSpec
from .supervise import log_failure, supervised

log = logging.getLogger(__name__)

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


def observation_verdict(spec: ServedModelSpec, seen: Observation) -> tuple[bool | None, str, str]:
    """(ready, reason, message) from what the poller learned; ready is None (Unknown) when the server
    could not be asked: pods that pass their probe say a version is servable, not which one."""
    if not seen.polled:
        return False, "AwaitingModelServer", f"Waiting for the model server's first answer ({seen.url})."
    if seen.error:
        return (
            None,
            "ModelServerUnreachable",
            f"The pods are ready, but the operator cannot reach the model server at {seen.url} to learn "
            f"which versions it serves ({seen.error}). Check the network path from the operator to the "
            "model server's Service (a NetworkPolicy, or an operator running outside the cluster).",
        )
    return serving_verdict(spec, seen.versions or [])


def _join(versions: list[int]) -> str:
    return ", ".join(map(str, versions))


PollKey = tuple  # (namespace, name) of a ServedModel, or (namespace, name, track) with a canary


@dataclass(frozen=True)
class Observation:
    """What the poller last learned about one model server."""

    versions: list[VersionState] | None = None  # the last answer (kept while the server is unreachable)
    error: str = ""  # why the last poll failed; "" when it answered
    polled: bool = False  # False until the first poll answered or failed
    url: str = ""

    @property
    def reachable(self) -> bool:
        return self.polled and not self.error


@dataclass
class _Entry:
    url: str
    fingerprint: str
    busy: bool = False
    observation: Observation = field(default_factory=Observation)
    next_poll: float = 0.0
    failures: int = 0
    changed_at: float = float("-inf")  # when the spec last changed (not when it was first seen)
    in_flight: bool = False
    kind: str = "model"  # "model": TF Serving's status API; "sync": an S3 sync sidecar's state


@dataclass
class ModelServerPoller:
    """Polls the model servers from its own task, never from a reconcile.

    A reconcile only says what to poll (`watch`) and reads what was learned (`observed`); neither does I/O.
    The poll task asks each due server at most `max_concurrent` at a time, over its own HTTP connections
    (no thread of the reconciles' pool is held), and calls `on_change` with the ServedModel's key only when
    the answer differs from the one before: the versions, or whether the server could be reached.

    Cadence: every FAST_SECONDS while a ServedModel rolls out, for SETTLE_SECONDS after its spec changed and
    while the server reports a version in transition (or none AVAILABLE); otherwise SLOW_SECONDS +-20 %; an
    unreachable server is asked again after an exponential backoff up to MAX_BACKOFF_SECONDS.
    """

    url_template: str = "http://{service}.{namespace}.svc:{port}"
    max_concurrent: int = 8
    clock: Any = time.monotonic
    on_change: Callable[[tuple[str, str]], None] | None = None
    request_timeout: float = REQUEST_TIMEOUT_SECONDS
    _entries: dict[PollKey, _Entry] = field(default_factory=dict)
    _due: list[tuple[float, int, PollKey]] = field(default_factory=list)  # heap, stale items skipped
    _seq: int = 0
    _wake: asyncio.Event | None = None
    _task: asyncio.Task | None = None
    _fetches: set[asyncio.Task] = field(default_factory=set)
    _slots: asyncio.Semaphore | None = None
    _session: Any = None  # aiohttp.ClientSession, made in the loop

    def url(self, spec: ServedModelSpec, service: str | None = None) -> str:
        base = self.url_template.format(
            service=service or spec.name, namespace=spec.namespace, port=spec.rest_port
        )
        return f"{base}/v1/models/{spec.model_name}"

    # -- what reconciles call (no I/O) --------------------------------------------------------------

    def watch(
        self,
        key: PollKey,
        url: str,
        fingerprint: str,
        busy: bool,
        age: float | None = None,
        kind: str = "model",
    ) -> None:
        """Poll this model server (from now on, or keep polling it). A new server or a new spec (the
        fingerprint) is asked at once; `busy` (rolling out) keeps the fast cadence. `age`: seconds since the
        ServedModel was created, so that a new one counts as just changed (and one an operator restart
        meets for the first time does not). `kind` "sync": the URL is an S3 sync sidecar's state, and
        the observation's `versions` is its SyncState (None until it answered)."""
        now = self.clock()
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(url, fingerprint, busy, Observation(url=url), kind=kind)
            if age is not None and age < SETTLE_SECONDS:
                entry.changed_at = now - max(0.0, age)
            self._schedule(key, entry, now)
            return
        entry.busy = busy
        if fingerprint != entry.fingerprint or url != entry.url:
            if fingerprint != entry.fingerprint:
                entry.changed_at = now
            entry.fingerprint, entry.url, entry.failures = fingerprint, url, 0
            self._schedule(key, entry, now)
        elif busy and entry.next_poll - now > FAST_SECONDS and not entry.failures:
            self._schedule(key, entry, now + FAST_SECONDS)

    def unwatch(self, key: PollKey) -> None:
        """No pod is ready to answer: stop asking (and forget the answer, which no pod stands behind)."""
        self._entries.pop(key, None)

    def forget(self, key: tuple[str, str]) -> None:
        """The ServedModel is gone: drop every track's entry."""
        for entry_key in [k for k in self._entries if k == key or (isinstance(k, tuple) and k[:2] == key)]:
            self._entries.pop(entry_key, None)

    def observed(self, key: PollKey) -> Observation:
        entry = self._entries.get(key)
        return entry.observation if entry is not None else Observation()

    def watched(self) -> int:
        return len(self._entries)

    # -- the poll task ------------------------------------------------------------------------------

    def start(self, restart_delay: float = 1.0) -> None:
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.max_concurrent)
        # Nobody awaits this task until shutdown: supervised, a failure is logged and the loop restarted.
        self._task = supervised("model-server-poller", self._run, first_delay=restart_delay)

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._fetches) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def poll_due(self) -> int:
        """Poll every server that is due now and wait for the answers (the task's step; tests call it)."""
        started = self._start_due()
        if started:
            await asyncio.gather(*started, return_exceptions=True)
        return len(started)

    def next_due(self) -> float | None:
        """Seconds until the next poll is due (None: nothing to poll)."""
        self._drop_stale()
        return max(0.0, self._due[0][0] - self.clock()) if self._due else None

    def _schedule(self, key: PollKey, entry: _Entry, when: float) -> None:
        entry.next_poll = when
        self._seq += 1
        heapq.heappush(self._due, (when, self._seq, key))
        if self._wake is not None:
            self._wake.set()

    def _drop_stale(self) -> None:
        while self._due:
            when, _, key = self._due[0]
            entry = self._entries.get(key)
            if entry is not None and entry.next_poll == when and not entry.in_flight:
                return
            heapq.heappop(self._due)

    def _start_due(self) -> list[asyncio.Task]:
        started = []
        now = self.clock()
        while True:
            self._drop_stale()
            if not self._due or self._due[0][0] > now:
                return started
            _, _, key = heapq.heappop(self._due)
            entry = self._entries[key]
            entry.in_flight = True
            task = asyncio.create_task(self._poll(key, entry), name=f"model-server-poll-{'/'.join(key)}")
            self._fetches.add(task)
            task.add_done_callback(self._fetches.discard)
            task.add_done_callback(log_failure)
            started.append(task)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._start_due()
            wait = self.next_due()
            self._wake.clear()
            # asyncio.wait, not wait_for: wait_for can swallow a cancellation that meets a wake-up (3.11).
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({woken}, timeout=wait if wait is not None else 3600)
            finally:
                woken.cancel()

    async def _poll(self, key: PollKey, entry: _Entry) -> None:
        try:
            await self._poll_once(key, entry)
        except Exception:
            # A bug here must not end the polling of this server: log it, and ask again after a backoff.
            log.exception("polling the model server of %s failed", "/".join(key))
            if self._entries.get(key) is entry:
                entry.failures += 1
                self._schedule(key, entry, self.clock() + _backoff(entry.failures))

    async def _poll_once(self, key: PollKey, entry: _Entry) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        before, fingerprint = entry.observation, entry.fingerprint
        try:
            async with self._slots:
                url = entry.url
                versions, error = await self._fetch(url, entry.kind)
        finally:
            entry.in_flight = False
        if self._entries.get(key) is not entry:
            return  # unwatched or forgotten meanwhile
        now = self.clock()
        if entry.fingerprint != fingerprint or entry.url != url:  # the spec changed while we asked
            self._schedule(key, entry, now)
            return
        if error:
            entry.failures += 1
            delay = _backoff(entry.failures)
            entry.observation = Observation(before.versions, error, True, url)
        else:
            entry.failures = 0
            entry.observation = Observation(versions, "", True, url)
            settling = entry.busy or now - entry.changed_at < SETTLE_SECONDS or _in_transition(versions)
            delay = FAST_SECONDS if settling else SLOW_SECONDS * random.uniform(0.8, 1.2)
        self._schedule(key, entry, now + delay)
        after = entry.observation
        if self.on_change is not None and (
            not before.polled or before.versions != after.versions or bool(before.error) != bool(after.error)
        ):
            self.on_change(key[:2])

    async def _fetch(self, url: str, kind: str = "model") -> tuple[Any, str]:
        """(versions, "") from an answer, (None, why) when the server could not be reached."""
        try:
            versions = await (self._get_sync(url) if kind == "sync" else self._get(url))
            metrics.MODEL_SERVER_REQUESTS.labels("ok").inc()
            return versions, ""
        except ModelNotFound:
            metrics.MODEL_SERVER_REQUESTS.labels("not_found").inc()
            return [], ""  # up, but no version of the model found yet
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, OSError) as exc:
            metrics.MODEL_SERVER_REQUESTS.labels("unreachable").inc()
            detail = str(exc) or exc.__class__.__name__
            return None, f"{exc.__class__.__name__}: {detail}"[:300]
        except (TypeError, AttributeError, KeyError) as exc:  # an answer that is not a model status
            metrics.MODEL_SERVER_REQUESTS.labels("unreachable").inc()
            return None, f"unexpected answer ({exc.__class__.__name__}: {exc})"[:300]

    async def _get_sync(self, url: str) -> SyncState:
        async with self._http().get(url) as resp:
            if resp.status >= 400:
                raise aiohttp.ClientResponseError(
                    resp.request_info, resp.history, status=resp.status, message=resp.reason or ""
                )
            return parse_sync_state(await resp.json(content_type=None))

    def _http(self) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.request_timeout),
                connector=aiohttp.TCPConnector(limit=self.max_concurrent),
                trust_env=False,  # cluster-internal addresses: no proxies
            )
        return self._session

    async def _get(self, url: str) -> list[VersionState]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.request_timeout),
                connector=aiohttp.TCPConnector(limit=self.max_concurrent),
                trust_env=False,  # cluster-internal addresses: no proxies
            )
        async with self._session.get(url) as resp:
            if resp.status == 404:
                raise ModelNotFound(await resp.text())
            if resp.status >= 400:
                raise aiohttp.ClientResponseError(
                    resp.request_info, resp.history, status=resp.status, message=resp.reason or ""
                )
            return parse_model_status(await resp.json(content_type=None))


def _backoff(failures: int) -> float:
    return min(MAX_BACKOFF_SECONDS, FAST_SECONDS * 2 ** (failures - 1))


def _in_transition(versions: Any) -> bool:
    """Loading, unloading, or nothing AVAILABLE yet (a sync sidecar: not synced, or failing): worth asking
    again soon."""
    if isinstance(versions, SyncState):
        return not versions.first_sync_done or bool(versions.error_code or versions.too_big)
    states = {v.state for v in versions or []}
    return "AVAILABLE" not in states or bool(states & {"START", "LOADING", "UNLOADING"})


class ModelNotFound(Exception):
    """404 from the status API: the server does not know the model (no version found yet)."""
