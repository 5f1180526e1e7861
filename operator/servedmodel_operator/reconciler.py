"""One level-based reconcile per ServedModel: render, apply what differs, rebuild status, post events.

It reads only from in-memory caches (kopf indexes, which kopf fills from its watches before any handler
runs), so a reconcile of an unchanged ServedModel makes no API request at all. Writes are server-side
applies of whole rendered objects, one status merge patch when the status changed, and events on
transitions users care about.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from . import status as st
from .constants import ANNOTATION_SPEC_HASH, GROUP, VERSION
from .drift import needs_apply
from .kube import ApiError, KubeApi
from .render import endpoints, render
from .spec import InvalidSpec, ServedModelSpec, parse
from .workqueue import Retry

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name) of a ServedModel


class Cache(Protocol):
    def servedmodel(self, key: Key) -> dict[str, Any] | None: ...
    def child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def pvc_exists(self, namespace: str, name: str) -> bool: ...
    def servedmodel_keys(self) -> Iterable[Key]: ...


@dataclass
class Reconciler:
    api: KubeApi
    cache: Cache
    # Ready reasons already announced with an event, so a resync does not repeat them.
    _announced: dict[Key, tuple[int, str]] = field(default_factory=dict)

    async def reconcile(self, key: Key) -> None:
        sm = self.cache.servedmodel(key)
        if sm is None or sm["metadata"].get("deletionTimestamp"):
            self._announced.pop(key, None)
            return  # gone or going: owner references let the garbage collector remove the children
        try:
            spec = parse(sm)
        except InvalidSpec as exc:
            await self._blocked(key, sm, None, "InvalidSpec", str(exc))
            return
        if not self.cache.pvc_exists(spec.namespace, spec.claim_name):
            await self._blocked(
                key,
                sm,
                spec,
                "StorageNotFound",
                f"PersistentVolumeClaim {spec.claim_name!r} does not exist in namespace {spec.namespace!r}; "
                "create it (the model server mounts it at /models) and the model will be served.",
            )
            return

        deployment = None
        applied_any = False
        for desired in render(spec):
            kind, name = desired["kind"], desired["metadata"]["name"]
            live = self.cache.child(kind, spec.namespace, name)
            if needs_apply(desired, live):
                try:
                    applied = await asyncio.to_thread(self.api.apply, desired)
                except ApiError as exc:
                    if not exc.permanent:
                        raise Retry(f"applying {kind} {name}: {exc}") from exc
                    await self._blocked(
                        key,
                        sm,
                        spec,
                        "ApplyFailed",
                        f"The API server rejected {kind} {name!r}: {exc.message}",
                    )
                    return
                except requests.RequestException as exc:
                    raise Retry(f"applying {kind} {name}: {exc}") from exc
                await self._announce_apply(sm, desired, live)
                live, applied_any = applied, True
            if kind == "Deployment":
                deployment = live

        conditions = st.rollout_conditions(deployment, spec.replicas)
        wrote_status = await self._write_status(key, sm, spec, conditions, deployment)
        if not (applied_any or wrote_status):
            log.debug("reconciled %s/%s: up to date", *key)

    async def _announce_apply(
        self, sm: dict[str, Any], desired: dict[str, Any], live: dict[str, Any] | None
    ) -> None:
        kind, name = desired["kind"], desired["metadata"]["name"]
        if live is None:
            reason, message = "Created", f"Created {kind} {name}"
        elif (live["metadata"].get("annotations") or {}).get(ANNOTATION_SPEC_HASH) == desired["metadata"][
            "annotations"
        ][ANNOTATION_SPEC_HASH]:
            reason, message = (
                "DriftCorrected",
                f"Restored {kind} {name}, which was changed outside the operator",
            )
        else:
            reason, message = "Updated", f"Updated {kind} {name} to the current spec"
        log.info("%s/%s: %s", sm["metadata"]["namespace"], sm["metadata"]["name"], message)
        await asyncio.to_thread(self.api.post_event, sm, "Normal", reason, message, st.now_rfc3339())

    async def _blocked(
        self, key: Key, sm: dict[str, Any], spec: ServedModelSpec | None, reason: str, message: str
    ) -> None:
        log.warning("%s/%s: %s: %s", key[0], key[1], reason, message)
        await self._write_status(key, sm, spec, st.blocked_conditions(reason, message), None)

    async def _write_status(
        self,
        key: Key,
        sm: dict[str, Any],
        spec: ServedModelSpec | None,
        conditions: list[st.Condition],
        deployment: dict[str, Any] | None,
    ) -> bool:
        generation = sm["metadata"].get("generation", 0)
        old = sm.get("status") or {}
        new = st.build_status(
            old=old,
            generation=generation,
            conditions=conditions,
            model_name=spec.model_name if spec else None,
            version_policy=spec.version_policy.summary() if spec else None,
            endpoints=endpoints(spec) if spec else None,
            deployment=deployment,
            desired_replicas=spec.replicas if spec else None,
        )
        patch = st.status_patch(old, new)
        if patch is not None:
            try:
                await asyncio.to_thread(self.api.patch_status, GROUP, VERSION, key[0], key[1], patch)
            except ApiError as exc:
                if exc.status == 404:
                    return True  # deleted meanwhile
                raise Retry(f"writing status: {exc}") from exc
            except requests.RequestException as exc:
                raise Retry(f"writing status: {exc}") from exc
        await self._announce_ready(key, sm, conditions[0], generation)
        return patch is not None

    async def _announce_ready(
        self, key: Key, sm: dict[str, Any], ready: st.Condition, generation: int
    ) -> None:
        """One event per Ready reason and generation: users see transitions, not every resync."""
        mark = (generation, ready.reason)
        if self._announced.get(key) == mark:
            return
        previous = self._announced.get(key)
        self._announced[key] = mark
        quiet = {"ReplicasNotReady", "DeploymentMissing"}
        if ready.reason in quiet or (previous is None and ready.status):
            return  # in progress, or already serving when the operator (re)started: nothing new to say
        type_ = "Normal" if ready.status or ready.reason == "ScaledToZero" else "Warning"
        await asyncio.to_thread(self.api.post_event, sm, type_, ready.reason, ready.message, st.now_rfc3339())
