"""The layout's readers and conditional writes against the real test object store."""

from __future__ import annotations

import hashlib

import pytest
from servedmodel_exporter.objectstore import layout
from servedmodel_exporter.objectstore.layout import Marker, MarkerError, ObjectEntry


def _marker(version: int) -> Marker:
    return Marker("iris", version, (ObjectEntry("saved_model.pb", 3, hashlib.sha256(b"abc").hexdigest()),))


def test_only_versions_with_a_marker_are_complete(object_store, bucket: str) -> None:
    s3 = object_store.client()
    for version in (1, 2, 3):
        s3.put_object(Bucket=bucket, Key=f"pre/iris/{version}/saved_model.pb", Body=b"abc")
    for version in (1, 3):
        s3.put_object(Bucket=bucket, Key=f"pre/iris/{version}.commit.json", Body=_marker(version).to_json())
    s3.put_object(Bucket=bucket, Key="pre/iris/.claims/4", Body=b"{}")
    s3.put_object(Bucket=bucket, Key="pre/other/1.commit.json", Body=b"{}")

    assert layout.complete_versions(s3, bucket, "pre", "iris") == [1, 3]
    listing = layout.model_listing(s3, bucket, "pre", "iris")
    assert listing.uncommitted == [2]
    assert sorted(listing.claims) == [4]
    assert listing.taken == {1, 2, 3, 4}
    assert layout.list_models(s3, bucket, "pre") == ["iris", "other"]
    assert layout.complete_versions(s3, bucket, "pre", "absent") == []

    marker = layout.read_marker(s3, bucket, "pre", "iris", 3)
    assert marker is not None and [o.path for o in marker.objects] == ["saved_model.pb"]
    assert layout.read_marker(s3, bucket, "pre", "iris", 2) is None


def test_a_misplaced_marker_is_refused(object_store, bucket: str) -> None:
    s3 = object_store.client()
    s3.put_object(Bucket=bucket, Key="iris/5.commit.json", Body=_marker(4).to_json())
    with pytest.raises(MarkerError, match="names version 4"):
        layout.read_marker(s3, bucket, "", "iris", 5)


def test_put_if_absent_creates_once(object_store, bucket: str) -> None:
    s3 = object_store.client()
    assert layout.put_if_absent(s3, bucket, "iris/.claims/1", b"first") is True
    assert layout.put_if_absent(s3, bucket, "iris/.claims/1", b"second") is False
    assert s3.get_object(Bucket=bucket, Key="iris/.claims/1")["Body"].read() == b"first"
    assert layout.conditional_writes_supported(s3, bucket, "iris") is True
    # The probe leaves nothing behind.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["iris/.claims/1"]
