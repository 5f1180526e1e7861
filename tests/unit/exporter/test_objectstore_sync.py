"""servedmodel-sync against a real S3 server (SeaweedFS, tests/conftest.py `object_store`; never a mock):
only complete versions, verified, renamed in one step; the version policy of models.config; deletion only
after TF Serving stopped reporting a version; the size limit; the store's errors as they are."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from servedmodel_exporter.objectstore import layout
from servedmodel_exporter.objectstore.client import s3_client
from servedmodel_exporter.objectstore.sync import (
    Policy,
    Syncer,
    quantity_bytes,
    read_policy,
    serve,
)

MODEL = "iris"
BUCKET = "sync-tests"  # one bucket (a store allots space per bucket); each test its own prefix


def files(version: int) -> dict[str, bytes]:
    """A small SavedModel-shaped version whose bytes say which version they are."""
    return {
        "saved_model.pb": f"graph of version {version}\n".encode() * 50,
        "variables/variables.index": f"index {version}".encode(),
        "variables/variables.data-00000-of-00001": bytes([version % 256]) * 4096,
    }


def upload(client, where, version: int, commit: bool = True, tamper: str = "") -> dict[str, bytes]:
    """Objects of `version` under the layout's prefix, then (if `commit`) its marker, last, as a publisher
    writes them; `tamper`: a path whose object is changed after the marker recorded its sha256."""
    content = files(version)
    base = layout.version_prefix(where.prefix, MODEL, version)
    for rel, data in content.items():
        client.put_object(Bucket=where.bucket, Key=base + rel, Body=data if rel != tamper else data + b"!")
    if commit:
        marker = layout.Marker(
            model=MODEL,
            version=version,
            objects=tuple(
                layout.ObjectEntry(rel, len(data), hashlib.sha256(data).hexdigest())
                for rel, data in sorted(content.items())
            ),
            manifest={"source": {"sha256": "0" * 64}},
        )
        key = layout.marker_key(where.prefix, MODEL, version)
        assert layout.put_if_absent(client, where.bucket, key, marker.to_json())
    return content


class ModelStatus:
    """What TF Serving's GET /v1/models/<model> answers, set by the test (the sidecar's input, so that the
    test decides when the server 'unloaded' a version). A real HTTP server on 127.0.0.1."""

    def __init__(self) -> None:
        self.states: dict[int, str] | None = {}  # None: 404 (model unknown)
        status = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if status.states is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                body = json.dumps(
                    {
                        "model_version_status": [
                            {"version": str(v), "state": s, "status": {"error_code": "OK"}}
                            for v, s in sorted(status.states.items(), reverse=True)
                        ]
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/models/{MODEL}"


@pytest.fixture
def tfserving() -> Iterator[ModelStatus]:
    status = ModelStatus()
    yield status
    status.server.shutdown()
    status.server.server_close()


@dataclass(frozen=True)
class Where:
    bucket: str
    prefix: str


@pytest.fixture
def where(object_store, client) -> Where:
    """The shared bucket (made once) and a prefix of this test's own."""
    try:
        client.head_bucket(Bucket=BUCKET)
    except Exception:
        object_store.create_bucket(BUCKET)
    return Where(BUCKET, f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def s3_env(object_store, monkeypatch) -> None:
    """The access key of the server, as the sidecar gets it (environment variables from the Secret)."""
    key, secret = object_store.credentials
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)


@pytest.fixture
def client(object_store, s3_env):
    return s3_client(object_store.endpoint, "us-east-1")


def syncer(client, where: Where, dest: Path, config: str = "", status_url: str = "", limit: str = "1Gi"):
    model_config = None
    if config:
        dest.parent.mkdir(parents=True, exist_ok=True)
        model_config = dest.parent / "models.config"
        model_config.write_text(config)
    return Syncer(
        client=client,
        bucket=where.bucket,
        prefix=where.prefix,
        model=MODEL,
        dest=dest,
        limit_bytes=quantity_bytes(limit),
        model_config=model_config,
        status_url=status_url,
    )


def entries(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir())


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


LATEST_1 = "model_config_list {\n  config {\n    model_version_policy { latest { num_versions: 1 } }\n  }\n}\n"  # noqa: E501


def test_only_complete_versions_are_mirrored_verified_and_in_one_piece(client, where, tmp_path):
    one = upload(client, where, 1)
    upload(client, where, 2, commit=False)  # an upload killed before its marker: objects, no marker
    dest = tmp_path / "models" / MODEL
    s = syncer(client, where, dest, config=LATEST_1)
    state = s.sync_once()
    assert state.error is None and state.first_sync_done
    assert state.versions == [1]
    assert entries(dest) == [".lock", "1"]  # no staging folder left, nothing of version 2
    assert tree(dest / "1") == one  # byte for byte what was uploaded
    assert oct((dest / "1" / "saved_model.pb").stat().st_mode & 0o777) == "0o644"  # TF Serving's user reads


def test_a_version_that_does_not_match_its_marker_is_never_renamed_in(client, where, tmp_path):
    upload(client, where, 1)
    upload(client, where, 2, tamper="variables/variables.index")
    dest = tmp_path / "models" / MODEL
    s = syncer(client, where, dest, config=LATEST_1)
    state = s.sync_once()
    assert state.error is not None and state.error.code == "VerificationFailed"
    assert "variables/variables.index" in state.error.message and "version 2" in state.error.message
    assert "2" not in entries(dest) and not [n for n in entries(dest) if n.startswith(".staging-")]
    assert not state.first_sync_done


def test_the_policy_is_read_from_models_config():
    assert read_policy(LATEST_1) == Policy("latest", num_versions=1)
    specific = "model_version_policy { specific { versions: 3 versions: 5 } }"
    assert read_policy(specific) == Policy("specific", versions=(3, 5))
    assert read_policy("model_version_policy { all {} }") == Policy("all")
    assert Policy("latest", num_versions=2).wanted([1, 4, 3]) == [4, 3]
    assert Policy("specific", versions=(1, 9)).wanted([1, 2, 3]) == [1]
    assert Policy("all").wanted([2, 1]) == [2, 1]
    assert (quantity_bytes("10Gi"), quantity_bytes("500M"), quantity_bytes("1024")) == (
        10 * 2**30,
        500 * 10**6,
        1024,
    )


def test_a_new_version_arrives_and_the_old_one_goes_only_after_tf_serving_unloaded_it(
    client, where, tmp_path, tfserving
):
    upload(client, where, 1)
    dest = tmp_path / "models" / MODEL
    s = syncer(client, where, dest, config=LATEST_1, status_url=tfserving.url)
    assert s.sync_once().versions == [1]
    tfserving.states = {1: "AVAILABLE"}
    upload(client, where, 2)
    # Version 2 is downloaded; 1 leaves the policy but TF Serving still serves it: kept.
    assert s.sync_once().versions == [1, 2]
    tfserving.states = {2: "AVAILABLE", 1: "AVAILABLE"}
    assert s.sync_once().versions == [1, 2]
    tfserving.states = {2: "AVAILABLE", 1: "UNLOADING"}
    assert s.sync_once().versions == [1, 2]
    tfserving.states = {2: "AVAILABLE", 1: "END"}  # unloaded (TF Serving keeps END versions listed)
    state = s.sync_once()
    assert state.versions == [2] and state.error is None
    assert entries(dest) == [".lock", "2"]


def test_nothing_is_deleted_while_tf_serving_cannot_be_asked(client, where, tmp_path):
    upload(client, where, 1)
    upload(client, where, 2)
    dest = tmp_path / "models" / MODEL
    s = syncer(client, where, dest, config="model_version_policy { all {} }", status_url="http://127.0.0.1:9/x")
    assert s.sync_once().versions == [1, 2]
    (dest.parent / "models.config").write_text(LATEST_1)  # the policy now wants 2 only
    assert s.sync_once().versions == [1, 2]  # the server does not answer: it may still serve 1


def test_a_version_too_big_for_the_limit_is_reported_not_downloaded(client, where, tmp_path):
    one = upload(client, where, 1)
    dest = tmp_path / "models" / MODEL
    size = sum(len(d) for d in one.values())
    s = syncer(client, where, dest, config=LATEST_1, limit=str(size - 1))
    state = s.sync_once()
    assert state.versions == [] and state.too_big == [(1, size)]
    assert state.first_sync_done and state.error is None
    assert state.to_json()["tooBig"] == [{"version": 1, "bytes": size}]
    assert state.limit_bytes == size - 1


def test_wrong_credentials_and_a_missing_bucket_are_the_stores_own_errors(
    object_store, client, where, tmp_path, monkeypatch
):
    upload(client, where, 1)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    wrong = syncer(s3_client(object_store.endpoint, "us-east-1"), where, tmp_path / "a" / MODEL)
    state = wrong.sync_once()
    assert state.error is not None and not state.first_sync_done
    assert state.error.code in ("SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId"), state.error
    assert f"s3://{where.bucket}/{where.prefix}/{MODEL}/" in state.error.message
    missing = syncer(client, Where("no-such-bucket-here", "p"), tmp_path / "b" / MODEL).sync_once()
    assert missing.error is not None and missing.error.code == "NoSuchBucket", missing.error


def test_the_state_is_served_and_readiness_waits_for_the_first_sync(client, where, tmp_path):
    dest = tmp_path / "models" / MODEL
    s = syncer(client, where, dest, config=LATEST_1)
    server = serve(s.state, 0, "127.0.0.1")
    port = server.server_address[1]

    def get(path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        assert get("/healthz")[0] == 200
        assert get("/ready") == (503, {"ready": False})
        upload(client, where, 3)
        s.sync_once()
        assert get("/ready") == (200, {"ready": True})
        code, state = get("/v1/sync")
        assert code == 200 and state["firstSyncDone"] is True and state["versions"] == [3]
        assert state["error"] is None and state["limitBytes"] == 2**30
    finally:
        server.shutdown()
        server.server_close()


def test_the_sidecar_imports_no_tensorflow():
    """It runs beside every model server: TensorFlow would cost seconds and hundreds of MB per pod."""
    import subprocess
    import sys

    code = (
        "import sys, servedmodel_exporter.objectstore.sync as s; "
        "assert s.main and not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')], "
        "sorted(m for m in sys.modules if 'tensorflow' in m or 'keras' in m)[:5]"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
