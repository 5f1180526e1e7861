"""kopf wiring: watches and in-memory indexes in, keys onto the work queue out.

Every event (a ServedModel, one of its children, a PVC) only enqueues the ServedModel it concerns; the
reconciler does the work. kopf calls no handler before every index is filled from its first listing, so
the first reconcile already sees the children that exist.

Run it with `servedmodel-operator` (see `--help`) or `kopf run -m servedmodel_operator.handlers -A`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from .constants import GROUP, MANAGED_BY_SELECTOR, OPERATOR_NAME, PLURAL, VERSION
from .discovery_lag import crd_established
from .discovery_lag import install as rescan_until_discovery_lists_crds
from .event_policy import EventPolicy
from .event_recorder import EventRecorder
from .kube import KubeApi, load_credentials
from .leader import LeaderElector, LeaseConfig, default_identity
from .missing_crd import install as wait_for_missing_crds
from .missing_crd import wait_until_served
from .modelserver import ModelServerPoller
from .policy import Policy
from .reconciler import Key, Reconciler
from .relist import install as report_deletions_after_relists
from .settings import Settings
from .supervise import supervised
from .watches import CHILD_RESOURCES, SERVICE_MONITOR_CRD, cached_metadata, narrow
from .workqueue import WorkQueue

log = logging.getLogger(__name__)
report_deletions_after_relists()  # before kopf starts any watch (see relist.py)
wait_for_missing_crds()  # around the above: a CRD deleted at run time is waited for (see missing_crd.py)
# A CRD established before API discovery lists it is asked about again (see discovery_lag.py).
rescan_until_discovery_lists_crds({(group, plural) for group, _, plural in CHILD_RESOURCES.values() if group})


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

    def __init__(self, settings: Settings, api: KubeApi, elector: LeaderElector | None = None):
        self.settings = settings
        self.api = api
        self.elector = elector
        # Set while this replica may write: at once when standalone, when it holds the Lease otherwise.
        # A standby keeps its caches warm and its queue filled, and starts working the moment it leads.
        self.leading = asyncio.Event()
        if elector is None:
            self.leading.set()
        self.cache: IndexCache | None = None
        self.queue: WorkQueue | None = None
        self.reconciler: Reconciler | None = None
        self.events: EventRecorder | None = None
        self._resync: asyncio.Task | None = None
        self._starter: asyncio.Task | None = None

    def bind(self, kwargs: dict[str, Any]) -> WorkQueue:
        if self.queue is None:
            self.cache = IndexCache({k: v for k, v in kwargs.items() if k.endswith("_index")})
            self.events = EventRecorder(self.api)
            self.events.start()
            self.reconciler = reconciler = Reconciler(
                api=self.api,
                cache=self.cache,
                events=EventPolicy(self.events),
                poller=ModelServerPoller(url_template=self.settings.model_server_url, on_change=self._polled),
                policy=Policy(self.settings.allowed_image_prefixes, self.settings.allowed_service_accounts),
                image_mount_setting=self.settings.model_image_mount,
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
            reconciler.requeue = self.queue.add_after
            self._starter = asyncio.create_task(self._start_when_leading(), name="start-when-leading")
            self._starter.add_done_callback(_fatal_on_failure)
        return self.queue

    async def _start_when_leading(self) -> None:
        await self.leading.wait()
        assert self.queue is not None and self.reconciler is not None and self.reconciler.poller is not None
        self.reconciler.poller.start()
        self.queue.start()
        self._resync = supervised("resync", self._resync_loop)

    def _polled(self, key: Key) -> None:
        """A model server's answer changed: its ServedModel's status needs a reconcile."""
        if self.queue is not None:
            self.queue.add(key)

    async def _resync_loop(self) -> None:
        """The level-based safety net: every ServedModel is reconciled again now and then (jittered)."""
        assert self.cache is not None and self.queue is not None
        period = self.settings.resync_seconds
        while True:
            await asyncio.sleep(period * random.uniform(0.9, 1.1))
            keys = self.cache.servedmodel_keys()
            for key in keys:
                self.queue.add(key)
            log.debug("resync: %d ServedModels queued", len(keys))

    async def stop(self) -> None:
        if self._starter:
            self._starter.cancel()
        if self._resync:
            self._resync.cancel()
        if self.queue:
            await self.queue.stop()
        if self.reconciler is not None and self.reconciler.poller is not None:
            await self.reconciler.poller.stop()
        if self.events:
            try:
                await self.events.flush(timeout=5)
            except asyncio.TimeoutError:
                log.warning("events still queued at shutdown were not posted")
            await self.events.stop()
        if self.elector is not None:  # nothing of ours writes any more: let a standby take over now
            await asyncio.to_thread(self.elector.release)


RUNTIME: Runtime | None = None
# Set by the command line (`--leader-elect`) before kopf starts; None: this replica acts alone.
LEADER_ELECTION: LeaseConfig | None = None
IDENTITY = default_identity()


def _runtime() -> Runtime:
    if RUNTIME is None:
        raise kopf.PermanentError("the operator runtime is not started")
    return RUNTIME


def _plain(body: kopf.Body, with_status: bool = True) -> dict[str, Any]:
    out = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": cached_metadata(body.metadata),
    }
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
    # Only our own children (and the one CRD we react to) come over the wire: see watches.py.
    narrow(settings.watching)
    # Our own prefix for anything kopf may store; no finalizers are needed (owner references do cleanup).
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    # kopf waits this long after an event for more events of the same object before it calls the handlers;
    # ours only put a key on the work queue (which merges repeats itself), so waiting only adds latency.
    settings.batching.batch_window = 0.01
    creds = load_credentials()
    user_agent = f"{OPERATOR_NAME}/{IDENTITY}"  # tells replicas apart in the API server's audit log
    api = KubeApi(creds, timeout=conf.request_timeout_seconds, user_agent=user_agent)
    # kopf looks for the ServedModel API once, right after this handler: it must be there (missing_crd.py).
    served = kopf.Resource(GROUP, VERSION, PLURAL, kind="ServedModel")
    await wait_until_served(lambda: api.serves(f"{GROUP}/{VERSION}", PLURAL), served)
    elector = None
    if LEADER_ELECTION is not None:
        loop = asyncio.get_running_loop()
        lease_api = KubeApi(creds, timeout=LEADER_ELECTION.retry_period * 2, user_agent=user_agent)
        elector = LeaderElector(
            lease_api,
            LEADER_ELECTION,
            on_started_leading=lambda: loop.call_soon_threadsafe(_runtime().leading.set),
            on_stopped_leading=_lost_lease,
        )
    RUNTIME = Runtime(conf, api, elector)
    if elector is not None:
        elector.start()
    log.info("servedmodel-operator started as %s: %s", IDENTITY, conf)


def _fatal_on_failure(task: asyncio.Task) -> None:
    """A one-shot start-up task failed: nothing would ever reconcile, so exit visibly (and be restarted)."""
    if task.cancelled() or task.exception() is None:
        return
    log.critical(
        "%s failed: exiting, since this operator would do nothing", task.get_name(), exc_info=task.exception()
    )
    logging.shutdown()
    os._exit(1)


def _lost_lease() -> None:
    """Stop at once, as client-go's controllers do: a successor may take the Lease any moment now, and no
    write of this process may follow. (Called from the election thread; a clean shutdown releases the
    Lease instead and does not come here.)"""
    runtime = RUNTIME
    if runtime is not None and runtime.elector is not None and runtime.elector.stopping:
        return
    log.critical("lost the leader Lease: exiting so that only the new leader writes")
    logging.shutdown()
    os._exit(1)


@kopf.on.cleanup()
async def shutdown(**_: Any) -> None:
    if RUNTIME is not None:
        await RUNTIME.stop()


# -- indexes: kopf's informer caches ------------------------------------------------------------


@kopf.index(GROUP, VERSION, PLURAL)
def servedmodel_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
    return {(namespace, name): _plain(body)}


@kopf.index(GROUP, VERSION, PLURAL)
def servedmodel_by_claim(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[Key, Key]:
    """ServedModels by the claim they mount: a PVC event finds its ServedModels without a scan."""
    claim = ((spec.get("storage") or {}).get("persistentVolumeClaim") or {}).get("claimName")
    return {(namespace, claim): (namespace, name)} if isinstance(claim, str) else {}


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
async def pvc_changed(namespace: str, name: str, servedmodel_by_claim: kopf.Index, **kwargs: Any) -> None:
    queue = _runtime().bind(kwargs)
    for key in servedmodel_by_claim.get((namespace, name), []):
        queue.add(key)


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
    runtime.reconciler.set_service_monitor_api(crd_established(body) and type != "DELETED")
    for key in runtime.cache.servedmodel_keys():
        queue.add(key)


@kopf.on.probe(id="pending_reconciles")
def pending_reconciles(**_: Any) -> int:
    runtime = RUNTIME
    return runtime.queue.pending() if runtime and runtime.queue else 0
