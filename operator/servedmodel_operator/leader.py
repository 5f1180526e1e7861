"""Leader election with a coordination.k8s.io/v1 Lease, the mechanism every Kubernetes controller uses.

The algorithm is client-go's (`tools/leaderelection`):

* A candidate reads the Lease. It takes it when nobody holds it, or when the record has not changed for
  `lease_duration` seconds *by the candidate's own clock* (it remembers when it last saw the record change,
  so clocks of different machines never have to agree). Taking and renewing are updates with the
  resourceVersion read, so of two candidates racing, one gets a 409 and stays a candidate.
* The leader renews every `retry_period`. If it has not renewed for `renew_deadline` (< lease_duration)
  it stops leading at once: the process exits, so no write of it can come after a successor took over.
  A killed leader simply stops renewing; a standby takes over `lease_duration` after the last renewal it saw.

It runs in a thread of its own, so neither a busy event loop nor a saturated thread pool can delay a
renewal past its deadline.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from .kube import ApiError, KubeApi

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0  # client-go's defaults
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError(
                "leader election needs lease duration > renew deadline > retry period > 0, got "
                f"{self.lease_duration}, {self.renew_deadline}, {self.retry_period}"
            )


def default_identity() -> str:
    """Unique per process, readable: the pod name (or host name) and a random suffix, as client-go does."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def default_namespace() -> str | None:
    """The namespace the operator runs in: POD_NAMESPACE, else the service account's; None outside."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _micro_time(wall: float) -> str:
    return dt.datetime.fromtimestamp(wall, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: KubeApi,
        config: LeaseConfig,
        on_started_leading: Callable[[], None],
        on_stopped_leading: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
    ):
        self.api, self.config = api, config
        self.on_started_leading, self.on_stopped_leading = on_started_leading, on_stopped_leading
        self.clock, self.wall = clock, wall
        self._stop = threading.Event()
        self._sleep = sleep or (lambda seconds: self._stop.wait(seconds))
        self._observed: dict[str, Any] | None = None  # the last Lease spec seen
        self._observed_at = 0.0  # by our clock, when that spec was first seen
        self.leading = False
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.config.namespace}/leases"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def release(self) -> None:
        """On a clean shutdown: stop renewing and give the Lease up, so a standby need not wait for it to
        expire (client-go's ReleaseOnCancel)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.retry_period * 2)
        if (
            not self.leading
            and self._observed is not None
            and self._observed.get("holderIdentity") != (self.config.identity)
        ):
            return
        try:
            lease = self.api.request("GET", f"{self.path}/{self.config.name}", "Lease")
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.config.identity:
                return
            released = {**spec, "holderIdentity": "", "renewTime": _micro_time(self.wall())}
            released["leaseDurationSeconds"] = 1
            self.api.request(
                "PUT", f"{self.path}/{self.config.name}", "Lease", body={**lease, "spec": released}
            )
            log.info("leader election: %s released Lease %s", self.config.identity, self.config.name)
        except (ApiError, requests.RequestException) as exc:
            log.warning("leader election: could not release the Lease: %s", exc)

    def run(self) -> None:
        c = self.config
        log.info("leader election: %s waits for Lease %s/%s", c.identity, c.namespace, c.name)
        while not self._stop.is_set():
            if self.try_acquire_or_renew():
                break
            self._sleep(c.retry_period * random.uniform(1.0, 1.2))  # client-go's JitterFactor 1.2
        else:
            return
        self.leading = True
        log.info("leader election: %s leads (Lease %s/%s)", c.identity, c.namespace, c.name)
        self.on_started_leading()
        renewed = self.clock()
        while not self._stop.is_set():
            self._sleep(c.retry_period)
            if self._stop.is_set():
                break
            if self.try_acquire_or_renew():
                renewed = self.clock()
            elif self.clock() - renewed > c.renew_deadline:
                break
        self.leading = False
        if not self._stop.is_set():
            log.error(
                "leader election: %s could not renew Lease %s/%s in time", c.identity, c.namespace, c.name
            )
        self.on_stopped_leading()

    def try_acquire_or_renew(self) -> bool:
        """One step of the algorithm; True when this candidate holds the Lease afterwards."""
        c = self.config
        now_wall = _micro_time(self.wall())
        try:
            try:
                lease = self.api.request("GET", f"{self.path}/{c.name}", "Lease")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                self.api.request("POST", self.path, "Lease", body=self._new_lease(now_wall))
                self._observe(self._new_lease(now_wall)["spec"])
                return True
            spec = lease.get("spec") or {}
            self._observe(spec)
            holder = spec.get("holderIdentity") or ""
            if holder != c.identity:
                duration = spec.get("leaseDurationSeconds") or c.lease_duration
                if holder and self.clock() < self._observed_at + duration:
                    return False  # held, and renewed within its duration (as far as we have seen)
                spec = {
                    **spec,
                    "holderIdentity": c.identity,
                    "acquireTime": now_wall,
                    "leaseTransitions": int(spec.get("leaseTransitions") or 0) + 1,
                }
            spec = {**spec, "renewTime": now_wall, "leaseDurationSeconds": int(c.lease_duration)}
            body = {**lease, "spec": spec}
            self.api.request("PUT", f"{self.path}/{c.name}", "Lease", body=body)
            self._observe(spec)
            return True
        except ApiError as exc:
            if exc.status != 409:  # 409: another candidate wrote first; it leads
                log.warning("leader election: %s", exc)
            return False
        except requests.RequestException as exc:
            log.warning("leader election: cannot reach the API server: %s", exc)
            return False

    def _observe(self, spec: dict[str, Any]) -> None:
        if spec != self._observed:
            self._observed, self._observed_at = dict(spec), self.clock()

    def _new_lease(self, now_wall: str) -> dict[str, Any]:
        c = self.config
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": c.name, "namespace": c.namespace},
            "spec": {
                "holderIdentity": c.identity,
                "leaseDurationSeconds": int(c.lease_duration),
                "acquireTime": now_wall,
                "renewTime": now_wall,
                "leaseTransitions": 0,
            },
        }
