"""The S3 layout (keys, commit markers) and s3:// URL parsing, without a store: plain facts about strings."""

from __future__ import annotations

import hashlib
import json

import pytest
from servedmodel_exporter.errors import UsageError
from servedmodel_exporter.objectstore import layout
from servedmodel_exporter.objectstore.layout import Marker, MarkerError, ObjectEntry
from servedmodel_exporter.objectstore.url import parse_s3_url

SHA = hashlib.sha256(b"x").hexdigest()


def test_keys_follow_the_volume_layout() -> None:
    assert layout.model_prefix("models/prod", "iris") == "models/prod/iris/"
    assert layout.version_prefix("models/prod", "iris", 3) == "models/prod/iris/3/"
    assert layout.object_key("models/prod", "iris", 3, "variables/variables.index") == (
        "models/prod/iris/3/variables/variables.index"
    )
    assert layout.marker_key("models/prod", "iris", 3) == "models/prod/iris/3.commit.json"
    assert layout.claim_key("models/prod", "iris", 3) == "models/prod/iris/.claims/3"
    assert layout.lock_key("models/prod", "iris") == "models/prod/iris/.lock"


def test_empty_prefix_is_the_bucket_root() -> None:
    assert layout.version_prefix("", "iris", 1) == "iris/1/"
    assert layout.marker_key("", "iris", 1) == "iris/1.commit.json"


@pytest.mark.parametrize("model", ["", ".hidden", "a/b", " iris"])
def test_bad_model_names_are_refused(model: str) -> None:
    with pytest.raises(UsageError, match="invalid model name"):
        layout.version_prefix("p", model, 1)


@pytest.mark.parametrize("version", [-1, True, "3", 2**63])
def test_bad_versions_are_refused(version) -> None:
    with pytest.raises(UsageError, match="invalid version"):
        layout.marker_key("p", "iris", version)


def test_marker_round_trip_and_contents() -> None:
    marker = Marker(
        model="iris",
        version=4,
        objects=(ObjectEntry("variables/variables.index", 10, SHA), ObjectEntry("saved_model.pb", 5, SHA)),
        manifest={"schema": 1, "source": {"sha256": SHA}},
        publisher="host-1/123",
    )
    body = json.loads(marker.to_json())
    assert body["kind"] == "servedmodel.io/commit-marker"
    assert body["total_size"] == 15
    assert [o["path"] for o in body["objects"]] == ["saved_model.pb", "variables/variables.index"]
    again = Marker.from_json(marker.to_json(), model="iris", version=4)
    assert again.total_size == 15
    assert again.manifest == {"schema": 1, "source": {"sha256": SHA}}
    assert {o.path for o in again.objects} == {"saved_model.pb", "variables/variables.index"}


def _marker_body(**changes) -> bytes:
    body = json.loads(Marker("iris", 4, (ObjectEntry("saved_model.pb", 5, SHA),)).to_json())
    body.update(changes)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b'{"kind": "other"}', "not a commit marker"),
        (_marker_body(schema=2), "schema 2"),
        (_marker_body(objects=[]), "lists no objects"),
        (_marker_body(objects=[{"path": "../x", "size": 1, "sha256": SHA}]), "invalid object path"),
        (_marker_body(objects=[{"path": "/abs", "size": 1, "sha256": SHA}]), "invalid object path"),
        (_marker_body(objects=[{"path": "a", "size": -1, "sha256": SHA}]), "invalid size"),
        (_marker_body(objects=[{"path": "a", "size": 1, "sha256": "abc"}]), "invalid sha256"),
        (_marker_body(objects=[{"path": "a", "size": 1, "sha256": SHA}] * 2), "twice"),
        (_marker_body(version=5), "names version 5"),
    ],
)
def test_invalid_markers_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(MarkerError, match=message):
        Marker.from_json(body, model="iris", version=4)


def test_parse_s3_url_takes_flags_over_environment() -> None:
    env = {"AWS_ENDPOINT_URL": "http://10.0.0.9:9000", "AWS_REGION": "eu-west-1"}
    loc = parse_s3_url("s3://models/prod/", environ=env)
    assert (loc.bucket, loc.prefix, loc.endpoint_url, loc.region) == (
        "models",
        "prod",
        "http://10.0.0.9:9000",
        "eu-west-1",
    )
    loc = parse_s3_url("s3://models", endpoint_url="http://127.0.0.1:8333/", region="r1", environ=env)
    assert (loc.prefix, loc.endpoint_url, loc.region) == ("", "http://127.0.0.1:8333", "r1")
    assert loc.url == "s3://models"


def test_parse_s3_url_defaults_to_aws() -> None:
    loc = parse_s3_url("s3://my-bucket/a/b", environ={})
    assert (loc.endpoint_url, loc.region, loc.prefix) == (None, "us-east-1", "a/b")
    assert loc.key("iris", "1.commit.json") == "a/b/iris/1.commit.json"
    env_s3_wins = {"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_S3": "http://b:2"}
    assert parse_s3_url("s3://my-bucket", environ=env_s3_wins).endpoint_url == "http://b:2"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/models", "not an S3 URL"),
        ("s3://", "invalid bucket name"),
        ("s3://Upper/x", "invalid bucket name"),
        ("s3://ab/x", "invalid bucket name"),
        ("s3://bucket/a//b", "invalid prefix"),
        ("s3://bucket/a/../b", "invalid prefix"),
    ],
)
def test_parse_s3_url_refuses_bad_urls(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_s3_url(url, environ={})


def test_parse_s3_url_refuses_an_endpoint_with_a_path() -> None:
    with pytest.raises(UsageError, match="invalid endpoint URL"):
        parse_s3_url("s3://bucket", endpoint_url="http://host:1/api", environ={})
