"""After a relist (410 Gone), objects deleted during the watch gap are reported as DELETED (relist.py): kopf's
own stream only lists what exists, so its indexes would keep them."""

from __future__ import annotations

import asyncio

from kopf._cogs.clients import watching
from servedmodel_operator.relist import RelistTracker


def obj(name: str, uid: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid,
            "ownerReferences": [{"kind": "ServedModel", "name": "m", "controller": True}],
            "managedFields": [{"manager": "x"}],
        },
        "spec": {"replicas": 2},
    }


def stream(*items):
    async def original(**_):
        for item in items:
            yield item

    return original


def run(tracker: RelistTracker, original) -> list:
    async def collect():
        return [item async for item in tracker.wrap(original)(resource="deployments", namespace=None)]

    return asyncio.run(collect())


LISTED = watching.Bookmark.LISTED


def test_a_child_deleted_during_the_gap_is_reported_after_the_relist():
    tracker = RelistTracker()
    # First stream: listed a and b, then the watch ends with 410 Gone (the stream returns).
    first = run(
        tracker,
        stream({"type": None, "object": obj("a", "1")}, {"type": None, "object": obj("b", "2")}, LISTED),
    )
    assert [e for e in first if isinstance(e, dict) and e["type"] == "DELETED"] == []
    # The relist: b is gone, c is new.
    second = run(
        tracker,
        stream({"type": None, "object": obj("a", "1")}, {"type": None, "object": obj("c", "3")}, LISTED),
    )
    deleted = [e for e in second if isinstance(e, dict) and e["type"] == "DELETED"]
    assert [e["object"]["metadata"]["name"] for e in deleted] == ["b"]
    meta = deleted[0]["object"]["metadata"]
    assert meta["uid"] == "2" and meta["ownerReferences"][0]["name"] == "m"  # its owner is reconciled
    assert "managedFields" not in meta  # only the identity is kept in memory
    assert second.index(deleted[0]) < second.index(LISTED)  # before kopf marks the resource as listed


def test_deletions_seen_by_the_watch_and_a_listing_cut_short_are_not_reported_again():
    tracker = RelistTracker()
    run(
        tracker,
        stream({"type": None, "object": obj("a", "1")}, LISTED, {"type": "DELETED", "object": obj("a", "1")}),
    )
    run(tracker, stream({"type": None, "object": obj("b", "2")}))  # cut short: no LISTED
    again = run(tracker, stream({"type": None, "object": obj("b", "2")}, LISTED))
    assert [e for e in again if isinstance(e, dict) and e["type"] == "DELETED"] == []
