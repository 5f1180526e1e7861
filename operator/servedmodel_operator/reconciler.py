"""One level-based reconcile per ServedModel: render, apply what differs, rebuild status, post events.

It reads only from in-memory caches (kopf indexes, which kopf fills from its watches before any handler
runs), so a reconcile of an unchanged ServedModel makes no API request at all. Writes are server-side
applies of whole rendered objects, one status merge patch when the status changed, and events on
transitions users care about.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from . import model_image
from . import status as st
from .constants import (
    ANNOTATION_SPEC_HASH,
    GROUP,
    HANDOVER_FIELD_MANAGER,
    SYNC_PORT,
    SYNC_STATE_PATH,
    VERSION,
)
from .drift import fingerprint, needs_apply
from .event_policy import DELETED, EventPolicy, ImmediateRecorder, apply_reason
from .export_lifecycle import ExportLifecycle
from .kube import ApiError, KubeApi
from .labels import applied_labels, hold, pending_message, staged_labels
from .modelserver import ModelServerPoller, Observation, observation_verdict
from .object_storage import SyncState, sidecar_start_failure, sync_problem
from .policy import Policy
from .render import (
    PRUNABLE_KINDS,
    SERVER_CONTAINER,
    endpoints,
    names,
    render,
    selector_labels,
    sync_service_name,
    track_service_name,
)
from .replicas_handover import handover
from .spec import InvalidSpec, ServedModelSpec, parse
from .storage_access import CONDITION as STORAGE_CONFLICT
from .storage_access import access_conflict
from .workqueue import Retry

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name) of a ServedModel
DISCOVERY_TTL_SECONDS = 300
DISCOVERY_RETRY_SECONDS = 30


class Cache(Protocol):
    def servedmodel(self, key: Key) -> dict[str, Any] | None: ...
    def child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def pvc_exists(self, namespace: str, name: str) -> bool: ...
    def pvc_access_modes(self, namespace: str, name: str) -> tuple[str, ...]: ...
    def children(self, kind: str, namespace: str, owner: str) -> list[dict[str, Any]]: ...
    def servedmodel_keys(self) -> Iterable[Key]: ...


def _age(sm: dict[str, Any]) -> float | None:
    """Seconds since the ServedModel was created (None when its creationTimestamp cannot be read)."""
    created = sm["metadata"].get("creationTimestamp")
    try:
        return time.time() - dt.datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class Reconciler:
    api: KubeApi
    cache: Cache
    # What events to post, and where to (the operator's recorder posts them off the reconcile worker).
    events: EventPolicy | None = None
    # What the API server answered to our last apply of each child: (kind, name) -> (the rendered object's
    # hash, a fingerprint of the answer in the fields we set). While the live object still holds that
    # answer, a difference from what we render is the admission chain's doing (a mutating webhook), not
    # drift: applying again would loop against the webhook.
    _admitted: dict[Key, dict[tuple[str, str], tuple[str, str]]] = field(default_factory=dict)
    _discovery: tuple[float, bool] | None = None
    poller: ModelServerPoller | None = None
    policy: Policy = field(default_factory=Policy)  # the images and accounts ServedModels may use
    image_mount_setting: str = "auto"  # SERVEDMODEL_MODEL_IMAGE_MOUNT
    _image_mount: tuple[float, str, str] | None = None  # (when, mount, why): detected, cluster-wide
    requeue: Callable[[Key, float], None] | None = None  # reconcile this key again after a delay
    # ServedModels the API server says are gone while the cache still holds them (key -> uid), forgotten:
    # a watch that stopped before their deletion never reports it (see _gone_meanwhile).
    _gone: dict[Key, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.events is None:
            self.events = EventPolicy(ImmediateRecorder(self.api))

    async def reconcile(self, key: Key) -> None:
        sm = self.cache.servedmodel(key)
        uid = sm["metadata"].get("uid") if sm is not None else None
        if key in self._gone and self._gone[key] != uid:
            del self._gone[key]  # the cache let it go, or a new object took the name
        if sm is None or sm["metadata"].get("deletionTimestamp") or key in self._gone:
            self.events.forget(key)
            self._admitted.pop(key, None)
            if self.poller is not None:
                self.poller.forget(key)
            return  # gone or going: owner references let the garbage collector remove the children
        try:
            spec = parse(sm)
        except InvalidSpec as exc:
            await self._blocked(key, sm, None, "InvalidSpec", str(exc))
            return
        problems = self.policy.violations(spec)
        if problems:  # checked before anything is rendered: nothing is created or changed
            await self._blocked(key, sm, spec, "PolicyViolation", "; ".join(problems) + ".")
            return
        if spec.claim_name and not self.cache.pvc_exists(spec.namespace, spec.claim_name):
            await self._blocked(
                key,
                sm,
                spec,
                "StorageNotFound",
                f"PersistentVolumeClaim {spec.claim_name!r} does not exist in namespace {spec.namespace!r}; "
                "create it (the model server mounts it at /models) and the model will be served.",
            )
            return

        deployment = canary_deployment = None
        applied_any = False
        held: dict[str, tuple[int, int]] = {}
        if spec.version_labels:
            rendered, held = self._stage_labels(key, spec)
        else:
            rendered = spec
        monitors = await self._service_monitor_api()
        mount, mount_why = (
            await self._detect_image_mount(spec.namespace) if spec.model_image else (model_image.MODELCAR, "")
        )
        desired_objects = render(rendered, service_monitor_api=bool(monitors), image_mount=mount)
        pending = [
            d
            for d in desired_objects
            if self._differs(key, d, self.cache.child(d["kind"], spec.namespace, d["metadata"]["name"]))
        ]
        # Nothing half-created: when more than one child changes, the API server first judges the rest
        # (a server-side dry run: admission and validation, nothing stored). The first one's real apply is
        # its own check, since nothing was written before it.
        if not await self._judge(key, sm, spec, pending[1:]):
            return
        announced: dict[str, list[tuple[str, str]]] = {}  # reason -> children: one event per reason
        try:
            for desired in desired_objects:
                kind, name = desired["kind"], desired["metadata"]["name"]
                live = self.cache.child(kind, spec.namespace, name)
                if self._differs(key, desired, live):
                    await self._hand_over_replicas(desired, live)
                    applied = await self._apply(key, sm, spec, desired)
                    if applied is None:
                        return
                    reason = apply_reason(desired, live)
                    log.info("%s/%s: %s %s %s", key[0], key[1], reason, kind, name)
                    announced.setdefault(reason, []).append((kind, name))
                    live, applied_any = applied, True
                    self._admitted.setdefault(key, {})[(kind, name)] = (
                        desired["metadata"]["annotations"][ANNOTATION_SPEC_HASH],
                        fingerprint(desired, applied),
                    )
                if kind == "Deployment" and name == names(spec)["deployment"]:
                    deployment = live
                elif kind == "Deployment":
                    canary_deployment = live
        finally:  # what was applied is announced, even when a later child failed
            for reason, children in announced.items():
                self.events.children(sm, reason, children)

        pruned, undeleted = await self._prune(
            sm,
            spec,
            {(o["kind"], o["metadata"]["name"]) for o in desired_objects},
            keep=() if monitors is not None else ("ServiceMonitor",),
        )
        applied_any |= pruned
        desired_replicas = spec.replicas
        if spec.autoscaling is not None:  # the autoscaler decides; report what it asked for
            desired_replicas = ((deployment or {}).get("spec") or {}).get(
                "replicas", spec.autoscaling.min_replicas
            )
        conditions = st.rollout_conditions(deployment, desired_replicas)
        if held:
            conditions = [
                st.Condition(st.PROGRESSING, True, "LabelsPending", pending_message(held))
                if c.type == st.PROGRESSING and not c.status
                else c
                for c in conditions
            ]
        server = self._model_server(key, sm, spec, deployment, conditions, "stable" if spec.canary else None)
        canary_status, canary_server = None, None
        if spec.canary is not None:
            canary_status, canary_server = self._canary_status(key, sm, spec, canary_deployment, conditions)
        versions = server.versions if server is not None and server.reachable else None
        if server is not None:
            failed = [
                f"version {v.version} failed to load: {v.error_code}: {v.error_message}"
                for v in versions or []
                if v.failed
            ]
            conditions = st.with_model_server(conditions, observation_verdict(spec, server), failed)
        # The first answer of a model server whose pods just turned ready is a poll away: a status already
        # written for this generation waits for it rather than saying Ready from an assumption (and then
        # flipping when the answer comes, as it would on every operator restart).
        awaiting = any(o is not None and not o.polled for o in (server, canary_server))
        defer = awaiting and (sm.get("status") or {}).get("observedGeneration") == sm["metadata"].get(
            "generation"
        )
        if spec.s3 is not None:
            sync = self._sync_state(key, sm, spec, deployment, desired_replicas, conditions)
            if sync is not None:
                conditions = st.with_sync_state(conditions, sync.first_sync_done, sync_problem(sync))
            else:
                conditions = await self._sidecar_start_failure(key, spec, deployment, conditions)
        elif self.poller is not None:
            self.poller.unwatch((*key, "sync"))
        if undeleted:
            conditions = st.with_delete_failures(conditions, undeleted)
        image_record = None
        if spec.model_image is not None:
            conditions, image_record = await self._model_image_status(
                key, sm, spec, conditions, mount, mount_why
            )
        elif spec.claim_name:
            conditions = await self._no_servable_version(key, spec, deployment, conditions)
            conflict = access_conflict(spec, self.cache.pvc_access_modes(spec.namespace, spec.claim_name))
            if conflict is not None:
                conditions.append(st.Condition(STORAGE_CONFLICT, True, *conflict))
        export_record = (sm.get("status") or {}).get("export")
        if spec.export is not None:
            export_record, export_condition = await ExportLifecycle(self.api, self.cache, self._event).step(
                sm, spec, export_record or {}
            )
            conditions.append(export_condition)
        if defer and not undeleted:
            log.debug("%s/%s: status waits for the model server's first answer", *key)
            return
        wrote_status = await self._write_status(
            key,
            sm,
            spec,
            conditions,
            deployment,
            export_record,
            desired_replicas,
            [v.to_status() for v in versions] if versions is not None else None,
            canary_status,
            image_record,
        )
        if undeleted:  # an administrator may grant the right without touching the ServedModel: retry
            raise Retry("; ".join(undeleted))
        if not (applied_any or wrote_status):
            log.debug("reconciled %s/%s: up to date", *key)

    def _differs(self, key: Key, desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
        """The child must be applied: it differs from what we render, and it is not, unchanged since, what
        the API server made of our last apply of this very rendering."""
        if not needs_apply(desired, live):
            return False
        if live is None or live["metadata"].get("deletionTimestamp"):
            return True
        mark = self._admitted.get(key, {}).get((desired["kind"], desired["metadata"]["name"]))
        if mark is None or mark[0] != desired["metadata"]["annotations"][ANNOTATION_SPEC_HASH]:
            return True
        return mark[1] != fingerprint(desired, live)

    async def _apply(
        self,
        key: Key,
        sm: dict[str, Any],
        spec: ServedModelSpec,
        desired: dict[str, Any],
        dry_run: bool = False,
    ) -> dict[str, Any] | None:
        """Server-side apply one child; None when the API server rejected it (status then says so)."""
        try:
            return await asyncio.to_thread(self.api.apply, desired, dry_run)
        except (ApiError, requests.RequestException) as exc:
            return await self._rejected(key, sm, spec, desired, exc)

    async def _judge(
        self, key: Key, sm: dict[str, Any], spec: ServedModelSpec, pending: list[dict[str, Any]]
    ) -> bool:
        """Server-side dry runs of `pending`, all at once (a create costs one round trip, not one per child);
        False when one was rejected (the first in order is reported, as a real apply's would be)."""

        async def judge(desired: dict[str, Any]) -> Exception | None:
            try:
                await asyncio.to_thread(self.api.apply, desired, True)
                return None
            except (ApiError, requests.RequestException) as exc:
                return exc

        for desired, exc in zip(pending, await asyncio.gather(*map(judge, pending)), strict=True):
            if exc is not None:
                await self._rejected(key, sm, spec, desired, exc)
                return False
        return True

    async def _rejected(
        self, key: Key, sm: dict[str, Any], spec: ServedModelSpec, desired: dict[str, Any], exc: Exception
    ) -> None:
        """A transient failure is retried; a rejection is reported in status (and retried when it is
        a missing right, which an administrator may grant without touching the ServedModel). In a namespace
        being deleted there is nothing to report or retry: the ServedModel is deleted with it."""
        kind, name = desired["kind"], desired["metadata"]["name"]
        if isinstance(exc, ApiError) and exc.namespace_terminating:
            log.info("%s/%s: not applying %s %s: its namespace is being deleted", key[0], key[1], kind, name)
            return None
        namespace_gone = f'namespaces "{key[0]}" not found'
        if isinstance(exc, ApiError) and exc.status == 404 and exc.message == namespace_gone:
            self._forget_deleted(key, sm)  # the namespace is gone, and the ServedModel with it
            return None
        if not isinstance(exc, ApiError) or not exc.permanent:
            raise Retry(f"applying {kind} {name}: {exc}") from exc
        await self._blocked(
            key,
            sm,
            spec,
            "ApplyFailed",
            f"The API server rejected {kind} {name!r}: {exc.message}",
        )
        if exc.forbidden:
            raise Retry(f"applying {kind} {name}: {exc}") from exc
        return None

    async def _hand_over_replicas(self, desired: dict[str, Any], live: dict[str, Any] | None) -> None:
        """Autoscaling turned on: keep the Deployment's replicas through the switch (replicas_handover.py)."""
        held = handover(desired, live)
        if held is None:
            return
        try:
            await asyncio.to_thread(self.api.apply, held, False, HANDOVER_FIELD_MANAGER)
        except ApiError as exc:
            if exc.status != 409:  # 409: another manager (the HPA) owns replicas already: handed over
                raise Retry(f"handing replicas of {desired['metadata']['name']} over: {exc}") from exc
        except requests.RequestException as exc:
            raise Retry(f"handing replicas of {desired['metadata']['name']} over: {exc}") from exc

    def _stage_labels(
        self, key: Key, spec: ServedModelSpec
    ) -> tuple[ServedModelSpec, dict[str, tuple[int, int]]]:
        """Hold label moves until TF Serving reports the new version AVAILABLE (see labels.py)."""
        previous = applied_labels(self.cache.child("ConfigMap", spec.namespace, names(spec)["configmap"]))
        observed = None
        if self.poller is not None:
            seen = self.poller.observed(key if spec.canary is None else (*key, "stable"))
            observed = seen.versions if seen.reachable else None
        available = {v.version for v in observed or [] if v.state == "AVAILABLE"}
        labels, held = staged_labels(spec.version_labels, previous, available)
        return (hold(spec, labels, held) if held else spec), held

    def _model_server(
        self,
        key: Key,
        sm: dict[str, Any],
        spec: ServedModelSpec,
        deployment: dict[str, Any] | None,
        conditions: list[st.Condition],
        track: str | None = None,
    ) -> Observation | None:
        """What the model server last said (the poller asks it from its own task); None while no pod is
        ready to answer. With a canary running, each track is asked through its own Service."""
        poll_key = key if track is None else (*key, track)
        ready_pods = ((deployment or {}).get("status") or {}).get("readyReplicas") or 0
        if self.poller is None:
            return None
        if not ready_pods:
            self.poller.unwatch(poll_key)
            return None
        busy = any(c.type == st.PROGRESSING and c.status for c in conditions)
        fingerprint = str(sm["metadata"].get("generation", 0))
        service = track_service_name(spec, track) if track else None
        self.poller.watch(poll_key, self.poller.url(spec, service), fingerprint, busy, _age(sm))
        return self.poller.observed(poll_key)

    def _sync_state(
        self,
        key: Key,
        sm: dict[str, Any],
        spec: ServedModelSpec,
        deployment: dict[str, Any] | None,
        desired_replicas: int,
        conditions: list[st.Condition],
    ) -> SyncState | None:
        """What the S3 sync sidecars last said (asked through their Service, which also reaches pods that
        are not ready: those are the ones that cannot sync); None while nothing answered."""
        poll_key = (*key, "sync")
        if self.poller is None:
            return None
        if deployment is None or not desired_replicas:
            self.poller.unwatch(poll_key)
            return None
        base = self.poller.url_template.format(
            service=sync_service_name(spec), namespace=spec.namespace, port=SYNC_PORT
        )
        fingerprint = str(sm["metadata"].get("generation", 0))
        # Asked often while the model is not settled (and while the sidecars report trouble: the poller's
        # own rule), at the slow steady cadence otherwise.
        by_type = {c.type: c.status for c in conditions}
        busy = bool(by_type.get(st.PROGRESSING)) or not by_type.get(st.READY)
        self.poller.watch(poll_key, base + SYNC_STATE_PATH, fingerprint, busy, _age(sm), kind="sync")
        seen = self.poller.observed(poll_key)
        return seen.versions if seen.reachable and isinstance(seen.versions, SyncState) else None

    async def _model_server_pods(
        self, key: Key, spec: ServedModelSpec, look_again: float | None
    ) -> list[dict[str, Any]] | None:
        """The model server pods (one LIST), or None when unreadable: the caller keeps what it knows.

        What the pods show (a container that cannot start, a server with nothing to load) changes no
        Deployment, so no watch event follows when it passes: the key is reconciled again after
        `look_again` seconds (None: not needed)."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(selector_labels(spec).items()))
        try:
            pods = await asyncio.to_thread(self.api.list_pods, spec.namespace, selector)
        except (ApiError, requests.RequestException) as exc:
            log.warning("%s/%s: cannot read the model server pods: %s", key[0], key[1], exc)
            return None
        if self.requeue is not None and look_again is not None:
            self.requeue(key, look_again)
        return pods

    async def _sidecar_start_failure(
        self,
        key: Key,
        spec: ServedModelSpec,
        deployment: dict[str, Any] | None,
        conditions: list[st.Condition],
    ) -> list[st.Condition]:
        """No sync sidecar answered: the pods are read (one LIST, only then) for a sidecar the kubelet
        cannot start (a missing Secret or key, an unpullable image), which becomes the condition."""
        if deployment is None or next(c for c in conditions if c.type == st.READY).status:
            return conditions
        pods = await self._model_server_pods(key, spec, look_again=5.0)
        if pods is None:
            return conditions
        failure = sidecar_start_failure(pods)
        return st.with_sync_state(conditions, True, failure) if failure else conditions

    async def _no_servable_version(
        self,
        key: Key,
        spec: ServedModelSpec,
        deployment: dict[str, Any] | None,
        conditions: list[st.Condition],
    ) -> list[st.Condition]:
        """No replica is ready: the pods are read (one LIST, only then) for servers that run but have no
        version to serve (the model folder holds none yet), which becomes Ready's reason."""
        ready = next(c for c in conditions if c.type == st.READY)
        if deployment is None or ready.status or ready.reason != "ReplicasNotReady":
            return conditions
        counts = deployment.get("status") or {}
        if not counts.get("replicas") or counts.get("readyReplicas"):
            return conditions  # no pod to read, or one serves
        pods = await self._model_server_pods(key, spec, look_again=10.0)
        if pods is None:
            return conditions
        waiting = st.servers_without_a_version(pods, SERVER_CONTAINER)
        where = f"{spec.path or '/'} on claim {spec.claim_name!r}"
        return st.with_no_servable_version(conditions, waiting, spec.model_name, where)

    async def _detect_image_mount(self, namespace: str) -> tuple[str, str]:
        """How storage.image reaches pods on this cluster (model_image.py): the setting when it is not
        `auto`, else whether the API server keeps an image volume in a dry-run Deployment (the ImageVolume
        feature gate), asked again every DISCOVERY_TTL_SECONDS."""
        if self.image_mount_setting != "auto":
            return self.image_mount_setting, "set by SERVEDMODEL_MODEL_IMAGE_MOUNT"
        now = time.monotonic()
        if self._image_mount is not None and now - self._image_mount[0] < DISCOVERY_TTL_SECONDS:
            return self._image_mount[1], self._image_mount[2]
        try:
            answer = await asyncio.to_thread(self.api.apply, model_image.probe_deployment(namespace), True)
            gate_on = model_image.gate_on_from_probe(answer)
        except ApiError as exc:
            if not exc.permanent:
                log.warning("cannot tell whether image volumes work (%s); using the modelcar", exc)
                return model_image.MODELCAR, f"the ImageVolume probe failed: {exc}"
            gate_on = False  # refused: an image volume with its source dropped is a volume without a type
        except requests.RequestException as exc:
            log.warning("cannot tell whether image volumes work (%s); using the modelcar", exc)
            return model_image.MODELCAR, f"the ImageVolume probe failed: {exc}"
        mount, why = model_image.choose_mount(gate_on, None)
        if self._image_mount is None or self._image_mount[1] != mount:
            log.info("model images are mounted with %s: %s", mount, why)
        self._image_mount = (now, mount, why)
        return mount, why

    async def _model_image_status(
        self,
        key: Key,
        sm: dict[str, Any],
        spec: ServedModelSpec,
        conditions: list[st.Condition],
        mount: str,
        why: str,
    ) -> tuple[list[st.Condition], dict[str, Any]]:
        """status.image and pull failures, from the pods. They are listed only while the model is not
        settled (a rollout, pods not ready, a digest not yet known): a settled model costs no request."""
        assert spec.model_image is not None
        reference = spec.model_image.reference
        old_status = sm.get("status") or {}
        old = old_status.get("image") or {}
        by_type = {c.type: c for c in conditions}
        settled_now = by_type[st.READY].status and not by_type[st.PROGRESSING].status
        settled_before = old_status.get("observedGeneration") == sm["metadata"].get("generation") and any(
            c.get("type") == st.PROGRESSING and c.get("status") == "False"
            for c in old_status.get("conditions") or []
        )
        known = old.get("reference") == reference and old.get("mount") == mount and old.get("digest")
        if settled_now and settled_before and known:
            return conditions, st.image_status(reference, mount, why, {}, old)
        pods = await self._model_server_pods(key, spec, look_again=None if settled_now else 5.0)
        if pods is None:
            return conditions, st.image_status(reference, mount, why, {}, old)
        view = model_image.observe(pods, reference)
        return st.with_image_pull_failure(conditions, view.failure), st.image_status(
            reference, mount, why, view.digests, old
        )

    def _canary_status(
        self,
        key: Key,
        sm: dict[str, Any],
        spec: ServedModelSpec,
        deployment: dict[str, Any] | None,
        conditions: list[st.Condition],
    ) -> tuple[dict[str, Any], Observation | None]:
        assert spec.canary is not None
        st_ = (deployment or {}).get("status") or {}
        status: dict[str, Any] = {
            "version": spec.canary.version,
            "replicas": spec.canary.replicas,
            "readyReplicas": st_.get("readyReplicas", 0) or 0,
            "service": track_service_name(spec, "canary"),
        }
        server = self._model_server(key, sm, spec.canary_view(), deployment, conditions, "canary")
        if server is not None and server.reachable and server.versions is not None:
            status["versions"] = [v.to_status() for v in server.versions]
        return status, server

    async def _event(self, sm: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Queue an event (posted off this worker by the recorder)."""
        assert self.events is not None
        self.events.emit(sm, type_, reason, message)

    def set_service_monitor_api(self, served: bool) -> None:
        """What the CRD watch saw is fresher than any discovery answer: the API server's discovery lags."""
        self._discovery = (time.monotonic(), served)

    async def _service_monitor_api(self) -> bool | None:
        """Discovery of monitoring.coreos.com/v1, cached: it changes when someone installs Prometheus.

        None when discovery fails and nothing is known yet: then ServiceMonitors are neither applied nor
        pruned (a failed request says nothing about whether the API exists). A failure after a good answer
        keeps that answer, and discovery is asked again a little later.
        """
        now = time.monotonic()
        if self._discovery is None or now - self._discovery[0] > DISCOVERY_TTL_SECONDS:
            try:
                found = await asyncio.to_thread(
                    self.api.serves, "monitoring.coreos.com/v1", "servicemonitors"
                )
            except (ApiError, requests.RequestException) as exc:
                if self._discovery is None:
                    log.warning("API discovery of ServiceMonitors failed; leaving them as they are: %s", exc)
                    return None
                log.warning("API discovery of ServiceMonitors failed; keeping the last answer: %s", exc)
                self._discovery = (now - DISCOVERY_TTL_SECONDS + DISCOVERY_RETRY_SECONDS, self._discovery[1])
                return self._discovery[1]
            self._discovery = (now, found)
        return self._discovery[1]

    async def _prune(
        self,
        sm: dict[str, Any],
        spec: ServedModelSpec,
        desired: set[tuple[str, str]],
        keep: tuple[str, ...] = (),
    ) -> tuple[bool, list[str]]:
        """Delete children the spec no longer renders (an HPA, a finished canary's Deployment, ...).

        Returns whether anything was deleted, and what the API server refused to delete (with its message):
        a child left behind keeps working (a rolled-back canary keeps its share of the traffic), so the
        refusal goes to status, not only to the log.
        """
        deleted: list[tuple[str, str]] = []
        try:
            return await self._prune_children(spec, desired, keep, deleted)
        finally:  # one event for everything deleted, even when a later delete failed
            self.events.children(sm, DELETED, deleted)

    async def _prune_children(
        self,
        spec: ServedModelSpec,
        desired: set[tuple[str, str]],
        keep: tuple[str, ...],
        deleted: list[tuple[str, str]],
    ) -> tuple[bool, list[str]]:
        pruned, refused = False, []
        for kind in PRUNABLE_KINDS:
            if kind in keep:  # not known whether the spec still renders it (discovery failed)
                continue
            for live in self.cache.children(kind, spec.namespace, spec.name):
                name = live["metadata"]["name"]
                if (kind, name) in desired or live["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await asyncio.to_thread(self.api.delete, live)
                except requests.RequestException as exc:
                    raise Retry(f"deleting {kind} {name}: {exc}") from exc
                except ApiError as exc:
                    if not exc.permanent:
                        raise Retry(f"deleting {kind} {name}: {exc}") from exc
                    log.warning("cannot delete %s %s: %s", kind, name, exc)
                    refused.append(
                        f"cannot delete {kind} {name!r}, which the spec no longer asks for: {exc.message}"
                    )
                    continue
                log.info("%s/%s: deleted %s %s", spec.namespace, spec.name, kind, name)
                deleted.append((kind, name))
                pruned = True
        return pruned, refused

    async def _blocked(
        self, key: Key, sm: dict[str, Any], spec: ServedModelSpec | None, reason: str, message: str
    ) -> None:
        log.warning("%s/%s: %s: %s", key[0], key[1], reason, message)
        # The record of past exports is history, not observation: keep it while blocked.
        export = (sm.get("status") or {}).get("export")
        await self._write_status(key, sm, spec, st.blocked_conditions(reason, message), None, export)

    def _gone_meanwhile(self, key: Key, sm: dict[str, Any], exc: ApiError) -> None:
        """The ServedModel was deleted after the cache's copy was taken. Usually its DELETED event follows,
        but not from a watch that stopped first: kopf stops watching a namespace as soon as its termination
        starts, before its content is deleted, so such a ServedModel would stay in the cache for good,
        reconciled again at every resync. (Keeping the namespace watched until it is gone made kopf hang at
        start-up: a watch stopped with events not yet indexed holds its handlers for good.) Only the API
        server's "<name> not found" counts: a 404 for the whole resource (its CRD being replaced) says
        nothing about the object."""
        if f'"{key[1]}" not found' in exc.message:
            self._forget_deleted(key, sm)

    def _forget_deleted(self, key: Key, sm: dict[str, Any]) -> None:
        if key not in self._gone:
            log.info("%s/%s: deleted (the API server no longer has it); forgetting it", *key)
        self._gone[key] = sm["metadata"].get("uid")
        self.events.forget(key)
        self._admitted.pop(key, None)
        if self.poller is not None:
            self.poller.forget(key)

    async def _write_status(
        self,
        key: Key,
        sm: dict[str, Any],
        spec: ServedModelSpec | None,
        conditions: list[st.Condition],
        deployment: dict[str, Any] | None,
        export: dict[str, Any] | None = None,
        desired_replicas: int | None = None,
        versions: list[dict[str, Any]] | None = None,
        canary: dict[str, Any] | None = None,
        image: dict[str, Any] | None = None,
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
            desired_replicas=desired_replicas if spec else None,
            export=export,
            versions=versions,
            canary=canary,
            image=image,
        )
        patch = st.status_patch(old, new)
        if patch is not None:
            try:
                await asyncio.to_thread(self.api.patch_status, GROUP, VERSION, key[0], key[1], patch)
            except ApiError as exc:
                if exc.status == 404:
                    self._gone_meanwhile(key, sm, exc)
                    return True
                raise Retry(f"writing status: {exc}") from exc
            except requests.RequestException as exc:
                raise Retry(f"writing status: {exc}") from exc
        self.events.ready(key, sm, conditions[0], generation)
        return patch is not None
