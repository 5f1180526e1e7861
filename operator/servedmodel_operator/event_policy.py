"""Which events a reconcile emits: one per transition users care about, never one per child or per resync.

A reconcile that creates a ServedModel's ConfigMap, Service and Deployment says so in one `Created` event;
a resync that changes nothing says nothing; `Ready` changes are announced once per reason and generation.
The events go to a recorder (event_recorder.py) that posts them off the reconcile worker.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import status as st
from .constants import ANNOTATION_SPEC_HASH
from .event_recorder import EventRecorder, involved_reference


class Recorder(Protocol):
    def record(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None: ...


CREATED, UPDATED, DRIFT_CORRECTED, DELETED = "Created", "Updated", "DriftCorrected", "Deleted"
# Ready reasons that mean "in progress": no event, the Progressing condition tells.
QUIET_READY_REASONS = frozenset(
    {"ReplicasNotReady", "NoServableVersion", "DeploymentMissing", "AwaitingModelServer"}
)


def apply_reason(desired: dict[str, Any], live: dict[str, Any] | None) -> str:
    """Why a child is applied: it was missing, the spec changed it, or someone else changed it."""
    if live is None:
        return CREATED
    live_hash = (live["metadata"].get("annotations") or {}).get(ANNOTATION_SPEC_HASH)
    if live_hash == desired["metadata"]["annotations"][ANNOTATION_SPEC_HASH]:
        return DRIFT_CORRECTED
    return UPDATED


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def summary_message(reason: str, children: list[tuple[str, str]]) -> str:
    """One sentence for every child one reconcile applied (or deleted) for the same reason."""
    named = _join([f"{kind} {name}" for kind, name in children])
    if reason == CREATED:
        return f"Created {named}"
    if reason == DRIFT_CORRECTED:
        which = "which was" if len(children) == 1 else "which were"
        return f"Restored {named}, {which} changed outside the operator"
    if reason == DELETED:
        return f"Deleted {named}, which the spec no longer asks for"
    return f"Updated {named} to the current spec"


@dataclass
class EventPolicy:
    recorder: Recorder
    # Ready reasons already announced, per ServedModel: a resync does not repeat them.
    _announced: dict[Hashable, tuple[int, str]] = field(default_factory=dict)

    def emit(self, sm: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.recorder.record(sm, type_, reason, message)

    def children(self, sm: dict[str, Any], reason: str, children: list[tuple[str, str]]) -> None:
        """One event for all the children one reconcile applied or deleted for `reason`."""
        if children:
            self.emit(sm, "Normal", reason, summary_message(reason, children))

    def ready(self, key: Hashable, sm: dict[str, Any], ready: st.Condition, generation: int) -> None:
        """One event per Ready reason and generation: users see transitions, not every resync."""
        mark = (generation, ready.reason)
        previous = self._announced.get(key)
        if previous == mark:
            return
        self._announced[key] = mark
        if ready.reason in QUIET_READY_REASONS or (previous is None and ready.status is True):
            return  # in progress, or already serving when the operator (re)started: nothing new to say
        type_ = "Normal" if ready.status is True or ready.reason == "ScaledToZero" else "Warning"
        self.emit(sm, type_, ready.reason, ready.message)

    def forget(self, key: Hashable) -> None:
        self._announced.pop(key, None)


class ImmediateRecorder:
    """Sends each event at once, in the caller's thread, through the same correlation as the operator's
    EventRecorder: for unit tests and tools that run a reconcile without the operator's event task."""

    def __init__(self, api: Any):
        self._sender = EventRecorder(api)

    def record(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self._sender.send_now(involved_reference(involved), type_, reason, message[:1024])
