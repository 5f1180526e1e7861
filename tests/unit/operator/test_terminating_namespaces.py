"""kopf's real namespace bookkeeping (revise_namespaces) with the operator's test of a namespace's end: a
terminating namespace stays watched until its DELETED event, so its ServedModels' deletions are seen."""

from __future__ import annotations

from kopf._cogs.structs import references
from kopf._core.reactor import observation
from servedmodel_operator import handlers, terminating_namespaces

# The conditions the namespace controller sets when termination starts: none True, so none blocks it.
STARTING = [
    {"type": "NamespaceDeletionDiscoveryFailure", "status": "False"},
    {"type": "NamespaceDeletionContentFailure", "status": "False"},
    {"type": "NamespaceContentRemaining", "status": "False"},
]


def event(kind: str | None, name: str = "t-1", terminating: bool = False) -> dict:
    meta = {"name": name}
    status = {"phase": "Active"}
    if terminating:
        meta["deletionTimestamp"] = "2026-11-30T08:00:00Z"
        status = {"phase": "Terminating", "conditions": STARTING}
    return {"type": kind, "object": {"metadata": meta, "status": status}}


def watched_after(*events: dict) -> set[str]:
    insights = references.Insights()
    observation.revise_namespaces(insights=insights, namespaces=["t-*"], raw_events=list(events))
    return set(insights.namespaces)


def test_the_operator_installs_the_narrower_test():
    assert handlers.watch_terminating_namespaces_until_gone is terminating_namespaces.install
    assert observation.is_deleted is terminating_namespaces.namespace_deleted


def test_a_terminating_namespace_stays_watched_until_it_is_deleted():
    assert watched_after(event("ADDED")) == {"t-1"}
    assert watched_after(event("ADDED"), event("MODIFIED", terminating=True)) == {"t-1"}
    assert watched_after(event("ADDED"), event("MODIFIED", terminating=True), event("DELETED")) == set()


def test_a_namespace_found_terminating_at_start_up_is_watched_for_its_remaining_content():
    assert watched_after(event(None, terminating=True)) == {"t-1"}


def test_namespaces_outside_the_pattern_are_still_ignored():
    assert watched_after(event("ADDED", name="other")) == set()
