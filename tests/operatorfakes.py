"""In-memory stand-ins for the operator's unit tests, to drive the real Reconciler with no cluster: a clock,
the API server (FakeApi records every write and answers like an API server that accepts everything) and the
watch caches (FakeCache holds one ServedModel and its children). A test subclasses them for what it
studies (a refused apply, a rewriting webhook, a gate), so each test file shows only its difference."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

# The label selector of ServedModel ns/m's model server pods: what the Reconciler lists them by.
MODEL_SERVERS = "app.kubernetes.io/instance=m,app.kubernetes.io/name=tensorflow-serving"

Ref = tuple[str, str]  # (kind, name) of an object in namespace ns


def ref(obj: dict[str, Any]) -> Ref:
    return obj["kind"], obj["metadata"]["name"]


def refs(objs: Iterable[dict[str, Any]]) -> list[Ref]:
    return [ref(o) for o in objs]


class FakeClock:
    """A monotonic clock a test moves by hand (`clock.now += 5`)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeApi:
    """The Reconciler's API calls, recorded. Every apply is accepted: its answer is what `admit` makes of
    the object (as sent, unless a subclass rewrites it or raises an ApiError to refuse it); `live` holds the
    last answer to a real apply of each child, as the API server stores it. Pods are listed from `pods`,
    keyed by label selector (none match otherwise); `listed` records each selector asked for."""

    def __init__(self, pods: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.applied: list[dict[str, Any]] = []  # real applies, in order, as sent
        self.dry_runs: list[dict[str, Any]] = []
        self.live: dict[Ref, dict[str, Any]] = {}
        self.deleted: list[Ref] = []
        self.status_patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []  # (reason, message) of each Event created
        self.pods = dict(pods or {})
        self.listed: list[str] = []

    def admit(self, obj: dict[str, Any]) -> dict[str, Any]:
        """What the API server answers to an apply of `obj` (a copy the subclass may change)."""
        return obj

    def apply(self, obj, dry_run=False):
        (self.dry_runs if dry_run else self.applied).append(copy.deepcopy(obj))
        answer = self.admit(copy.deepcopy(obj))
        if not dry_run:
            self.live[ref(obj)] = answer
        return answer

    def delete(self, obj):
        self.deleted.append(ref(obj))

    def list_pods(self, namespace, selector):
        self.listed.append(selector)
        return self.pods.get(selector, [])

    def patch_status(self, group, version, namespace, name, patch):
        self.status_patches.append(patch)

    @property
    def status(self) -> dict[str, Any]:
        """The status the last patch left (the Reconciler's patches carry the whole status)."""
        if not self.status_patches:
            return {}
        return {k: v for k, v in self.status_patches[-1]["status"].items() if v is not None}

    def create_event(self, event):
        self.events.append((event["reason"], event["message"]))
        return {"metadata": {"name": f"{event['involvedObject']['name']}.{len(self.events)}"}}

    def patch_event(self, namespace, name, patch):
        return {}

    def serves(self, group_version, plural):
        return False  # no ServiceMonitor API: Prometheus is not installed


class FakeCache:
    """The watch caches: one ServedModel, its children keyed by (kind, name) in `objects`, and a claim
    that exists and is ReadWriteMany."""

    def __init__(self, sm: dict[str, Any], children: Iterable[dict[str, Any]] = ()) -> None:
        self.sm = sm
        self.objects: dict[Ref, dict[str, Any]] = {ref(o): o for o in children}

    def servedmodel(self, key):
        return self.sm

    def child(self, kind, namespace, name):
        return self.objects.get((kind, name))

    def pvc_exists(self, namespace, name):
        return True

    def pvc_access_modes(self, namespace, name):
        return ("ReadWriteMany",)

    def children(self, kind, namespace, owner):
        return [o for (k, _), o in self.objects.items() if k == kind]

    def servedmodel_keys(self):
        return [(self.sm["metadata"]["namespace"], self.sm["metadata"]["name"])]
