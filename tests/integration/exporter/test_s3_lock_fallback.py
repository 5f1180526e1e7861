"""Stores that ignore If-None-Match: the publisher detects it and claims numbers under a lock object.

The real server honours the header, so the clients here drop it before signing: to the server they are
exactly the unconditional writes such a store would accept."""

from __future__ import annotations

import threading

import pytest
from servedmodel_exporter.errors import VersionExistsError
from servedmodel_exporter.objectstore import layout
from servedmodel_exporter.objectstore.publisher import S3Publisher
from servedmodel_exporter.objectstore.url import S3Location


def _ignoring_if_none_match(object_store):
    client = object_store.client()

    def drop(request, **_):  # noqa: ANN001
        del request.headers["If-None-Match"]

    client.meta.events.register("before-sign.s3.PutObject", drop)
    return client


def test_probe_detects_a_store_that_ignores_conditional_writes(object_store, bucket: str) -> None:
    assert layout.conditional_writes_supported(object_store.client(), bucket, "p") is True
    assert layout.conditional_writes_supported(_ignoring_if_none_match(object_store), bucket, "p") is False
    assert [o["Key"] for o in object_store.client().list_objects_v2(Bucket=bucket).get("Contents", [])] == []


def test_concurrent_claims_under_the_lock_object_get_distinct_numbers(object_store, bucket: str) -> None:
    location = S3Location(bucket, "p", object_store.endpoint, object_store.region)
    publishers = [S3Publisher(location, "m", client=_ignoring_if_none_match(object_store)) for _ in range(3)]
    assert publishers[0].conditional_writes() is False
    start = threading.Barrier(len(publishers))
    claimed: list[int] = []
    errors: list[BaseException] = []

    def claim(publisher: S3Publisher) -> None:
        try:
            start.wait()
            claimed.append(publisher.claim(None, "0" * 64).version)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(p,)) for p in publishers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sorted(claimed) == [1, 2, 3]
    keys = sorted(o["Key"] for o in object_store.client().list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["p/m/.claims/1", "p/m/.claims/2", "p/m/.claims/3"]  # the lock object is gone

    with pytest.raises(VersionExistsError, match="version 2 of m already exists or is being published"):
        publishers[0].claim(2, "1" * 64)


def test_gc_removes_an_expired_lock_object_only(object_store, bucket: str) -> None:
    """A publisher that died holding the lock left it: gc removes it once expired, never a live one."""
    s3 = object_store.client()
    location = S3Location(bucket, "p", object_store.endpoint, object_store.region)
    publisher = S3Publisher(location, "m", client=s3)
    live = b'{"owner": "other/1/x", "expires_utc": "2999-01-01T00:00:00+00:00"}'
    s3.put_object(Bucket=bucket, Key="p/m/.lock", Body=live)
    assert publisher.gc() == []
    assert s3.get_object(Bucket=bucket, Key="p/m/.lock")["Body"].read() == live
    s3.put_object(
        Bucket=bucket,
        Key="p/m/.lock",
        Body=b'{"owner": "other/1/x", "expires_utc": "2001-01-01T00:00:00+00:00"}',
    )
    assert publisher.gc() == []
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []
