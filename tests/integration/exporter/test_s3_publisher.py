"""The S3 publisher without TensorFlow: a folder of files (one past the multipart threshold) uploaded,
listed back and committed; a failure before the marker leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from servedmodel_exporter.errors import PublishError, VersionExistsError
from servedmodel_exporter.objectstore import layout
from servedmodel_exporter.objectstore.publisher import S3Publisher
from servedmodel_exporter.objectstore.url import S3Location

BIG = 70 * 2**20  # above the 64 MiB multipart threshold: uploaded in parts


@pytest.fixture
def publisher(object_store, bucket: str) -> S3Publisher:
    return S3Publisher(
        S3Location(bucket, "pre", object_store.endpoint, object_store.region),
        "m",
        client=object_store.client(),
    )


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "version"
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(b"graph")
    (root / "variables" / "variables.index").write_bytes(b"")  # empty files are objects too
    with open(root / "variables" / "variables.data-00000-of-00001", "wb") as handle:
        handle.write(os.urandom(BIG))
    return root


def test_upload_and_commit_a_folder_with_a_multipart_file(
    object_store, publisher: S3Publisher, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    claim = publisher.claim(None, "a" * 64)
    assert claim.version == 1
    entries = publisher.upload(claim, folder)
    assert layout.complete_versions(publisher.client, publisher.bucket, "pre", "m") == []  # not yet
    publisher.commit(claim, entries, {"source": {"sha256": "a" * 64}})
    assert layout.complete_versions(publisher.client, publisher.bucket, "pre", "m") == [1]

    s3 = object_store.client()
    marker = json.loads(s3.get_object(Bucket=publisher.bucket, Key="pre/m/1.commit.json")["Body"].read())
    assert {o["path"]: o["size"] for o in marker["objects"]} == {
        "saved_model.pb": 5,
        "variables/variables.index": 0,
        "variables/variables.data-00000-of-00001": BIG,
    }
    big = s3.get_object(Bucket=publisher.bucket, Key="pre/m/1/variables/variables.data-00000-of-00001")
    body = big["Body"].read()
    assert body == (folder / "variables" / "variables.data-00000-of-00001").read_bytes()
    assert "-" in big["ETag"]  # a multipart upload's ETag: <md5 of the parts' md5s>-<parts>
    expected = hashlib.sha256(body).hexdigest()
    assert next(o for o in marker["objects"] if o["size"] == BIG)["sha256"] == expected

    # A second commit of the same number is refused: the marker is written only if absent.
    with pytest.raises(VersionExistsError, match="appeared while publishing"):
        publisher.commit(claim, entries, None)


def test_abandon_removes_the_partial_upload_and_frees_the_number(
    publisher: S3Publisher, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    claim = publisher.claim(None, "b" * 64)
    publisher.upload(claim, folder)
    publisher.abandon(claim)
    keys = publisher.client.list_objects_v2(Bucket=publisher.bucket).get("Contents", [])
    assert keys == []
    assert publisher.claim(None, "c" * 64).version == 1


def test_a_symlink_in_the_folder_is_refused(publisher: S3Publisher, tmp_path: Path) -> None:
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "saved_model.pb").symlink_to("/etc/hostname")
    with pytest.raises(PublishError, match="not a regular file"):
        publisher.upload(publisher.claim(None, "d" * 64), folder)
