"""kopf wiring: watches and in-memory indexes in, keys onto the work queue out.

Every event (a ServedModel, one of its children, a PVC) only enqueues the ServedModel it concerns; the
reconciler does the work. kopf calls no handler before every index is filled from its first listing, so
the first reconcile already sees the children that exist.

Run it with `servedmodel-operator` (see `--help`) or `kopf run -m servedmodel_operator.handlers -A`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from .constants import GROUP, MANAGED_BY_SELECTOR, PLURAL, VERSION
from .kube import KubeApi, load_credentials
from .modelserver import ModelServerPoller
from .policy import Policy
from .reconciler import Key, Reconciler
from .settings import Settings
from .workqueue import WorkQueue

log = logging.getLogger(__name__)

CHILD_RESOURCES = {
    "ConfigMap": ("", "v1", "configmaps"),
    "Service": ("", "v1", "services"),
    "Deployment": ("apps", "v1", "deployments"),
    "Job": ("batch", "v1", "jobs"),
    "HorizontalPodAutoscaler": ("autoscaling", "v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy", "v1", "poddisruptionbudgets"),
    "ServiceMonitor": ("monitoring.coreos.com", "v1", "servicemonitors"),
}


class IndexCache:
    """The reconciler's view of the cluster, read from kopf's indexes."""

    def __init__(self, indexes: dict[str, kopf.Index]):
        self._ix = indexes

    @staticmethod
    def _one(index: kopf.Index, key: Any) -> Any:
        store = index.get(key)
        return next(iter(store), None) if store is not None else None

    def servedmodel(self, key: Key) -> dict[str, Any] | None:
        return self._one(self._ix["servedmodel_index"], key)

    def child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._one(self._ix[f"{kind.lower()}_index"], (namespace, name))

    def pvc_exists(self, namespace: str, name: str) -> bool:
        return self._ix["pvc_index"].get((namespace, name)) is not None

    def pvc_access_modes(self, namespace: str, name: str) -> tuple[str, ...]:
        return self._one(self._ix["pvc_index"], (namespace, name)) or ()

    def children(self, kind: str, namespace: str, owner: str) -> list[dict[str, Any]]:
        store = self._ix[f"{kind.lower()}_index"].get(("owner", namespace, owner))
        return list(store) if store is not None else []

    def servedmodel_keys(self) -> Iterable[Key]:
        return list(self._ix["servedmodel_index"].keys())


class Runtime:
    """The operator's long-lived parts, created at start-up and bound to kopf's indexes on first use."""

    def __init__(self, settings: Settings, api: KubeApi):
        self.settings = settings
        self.api = api
        self.cache: IndexCache | None = None
        self.queue: WorkQueue | None = None
        self.reconciler: Reconciler | None = None
        self._resync: asyncio.Task | None = None

    def bind(self, kwargs: dict[str, Any]) -> WorkQueue:
        if self.queue is None:
            self.cache = IndexCache({k: v for k, v in kwargs.items() if k.endswith("_index")})
            self.reconciler = reconciler = Reconciler(
                api=self.api,
                cache=self.cache,
                poller=ModelServerPoller(url_template=self.settings.model_server_url),
                policy=Policy(self.settings.allowed_image_prefixes, self.settings.allowed_service_accounts),
            )
            log.info(
                "policy: images starting with %s; ServiceAccounts %s",
                ", ".join(self.settings.allowed_image_prefixes) or "anything",
                ", ".join(self.settings.allowed_service_accounts) or "any",
            )
            self.queue = WorkQueue(
                reconciler.reconcile,
                workers=self.settings.workers,
                retry_min=self.settings.retry_min_seconds,
                retry_max=self.settings.retry_max_seconds,
            )
            reconciler.schedule = self.queue.add_after
            self.queue.start()
            self._resync = asyncio.create_task(self._resync_loop(), name="resync")
        return self.queue

    async def _resync_loop(self) -> None:
        """The level-based safety net: every ServedModel is reconciled again now and then (jittered)."""
        assert self.cache is not None and self.queue is not None
        period = self.settings.resync_seconds
        while True:
            await asyncio.sleep(period * random.uniform(0.9, 1.1))
            for key in self.cache.servedmodel_keys():
                self.queue.add(key)

    async def stop(self) -> None:
        if self._resync:
            self._resync.cancel()
        if self.queue:
            await self.queue.stop()


RUNTIME: Runtime | None = None


def _runtime() -> Runtime:
    if RUNTIME is None:
        raise kopf.PermanentError("the operator runtime is not started")
    return RUNTIME


def _plain(body: kopf.Body, with_status: bool = True) -> dict[str, Any]:
    out = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": dict(body.metadata)}
    for part in ("spec", "data") + (("status",) if with_status else ()):
        if part in body:
            out[part] = body[part]
    return out


def _child_entries(namespace: str, name: str, body: kopf.Body) -> dict[Any, dict[str, Any]]:
    """Found by name, and among its owner's children (so a reconcile need not scan every child)."""
    plain = _plain(body)
    entries: dict[Any, dict[str, Any]] = {(namespace, name): plain}
    owner = _owner_name(plain)
    if owner is not None:
        entries[("owner", namespace, owner)] = plain
    return entries


def _owner_name(body: Mapping[str, Any]) -> str | None:
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if (
            ref.get("controller")
            and ref.get("kind") == "ServedModel"
            and ref.get("apiVersion", "").startswith(GROUP)
        ):
            return ref["name"]
    return None


def _owner(body: kopf.Body) -> Key | None:
    name = _owner_name(body)
    return (body.metadata.namespace, name) if name else None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global RUNTIME
    conf = Settings.from_env()
    # Watches that silently hang are the classic kopf failure: bound them on both ends.
    settings.watching.server_timeout = conf.watch_server_timeout_seconds
    settings.watching.client_timeout = conf.watch_server_timeout_seconds + 60
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = conf.request_timeout_seconds
    # Our own prefix for anything kopf may store; no finalizers are needed (owner references do cleanup).
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    api = KubeApi(load_credentials(), timeout=conf.request_timeout_seconds)
    RUNTIME = Runtime(conf, api)
    log.info("servedmodel-operator started: %s", conf)


@kopf.on.cleanup()
async def shutdown(**_: Any) -> None:
    if RUNTIME is not None:
        await RUNTIME.stop()


# -- indexes: kopf's informer caches ------------------------------------------------------------


@kopf.index(GROUP, VERSION, PLURAL)
def servedmodel_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
    return {(namespace, name): _plain(body)}


@kopf.index("", "v1", "persistentvolumeclaims")
def pvc_index(
    namespace: str, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> dict[Key, tuple[str, ...]]:
    """Claims by name, with their access modes (the bound volume's, once bound): all the reconcile needs."""
    return {(namespace, name): tuple(status.get("accessModes") or spec.get("accessModes") or ())}


# -- triggers -----------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, PLURAL)
async def servedmodel_changed(namespace: str, name: str, **kwargs: Any) -> None:
    _runtime().bind(kwargs).add((namespace, name))


async def child_changed(body: kopf.Body, **kwargs: Any) -> None:
    owner = _owner(body)
    if owner is not None:
        _runtime().bind(kwargs).add(owner)


def _child_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, dict[str, Any]]:
    return _child_entries(namespace, name, body)


# Every kind of child gets the same cache (found by name and by owner) and the same trigger (its owner is
# reconciled). The index ids are what IndexCache looks up: "<kind>_index".
for _kind, (_group, _version, _plural) in CHILD_RESOURCES.items():
    kopf.index(_group, _version, _plural, labels=MANAGED_BY_SELECTOR, id=f"{_kind.lower()}_index")(
        _child_index
    )
    kopf.on.event(_group, _version, _plural, labels=MANAGED_BY_SELECTOR, id="child_changed")(child_changed)


@kopf.on.event("", "v1", "persistentvolumeclaims")
async def pvc_changed(namespace: str, name: str, **kwargs: Any) -> None:
    queue = _runtime().bind(kwargs)
    cache = _runtime().cache
    assert cache is not None
    for key in cache.servedmodel_keys():
        if key[0] != namespace:
            continue
        sm = cache.servedmodel(key) or {}
        claim = ((sm.get("spec") or {}).get("storage") or {}).get("persistentVolumeClaim") or {}
        if claim.get("claimName") == name:
            queue.add(key)


SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"


@kopf.on.event(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    when=lambda name, **_: name == SERVICE_MONITOR_CRD,
)
async def service_monitor_api_changed(type: str, body: kopf.Body, **kwargs: Any) -> None:
    """The Prometheus Operator came or went: ServedModels with monitoring get (or lose) their monitors."""
    runtime = _runtime()
    queue = runtime.bind(kwargs)
    assert runtime.reconciler is not None and runtime.cache is not None
    conditions = (body.get("status") or {}).get("conditions") or []
    established = any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
    runtime.reconciler.set_service_monitor_api(established and type != "DELETED")
    for key in runtime.cache.servedmodel_keys():
        queue.add(key)


@kopf.on.probe(id="pending_reconciles")
def pending_reconciles(**_: Any) -> int:
    runtime = RUNTIME
    return runtime.queue.pending() if runtime and runtime.queue else 0
