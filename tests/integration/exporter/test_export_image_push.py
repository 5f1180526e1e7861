"""`publish --image` and `image`: a Keras model exported and pushed to a real registry (docker-registry on
127.0.0.1), read back over the distribution API; a second push of the same versions uploads nothing."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from localregistry import LocalRegistry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    reg = LocalRegistry(tmp_path / "registry", _free_port()).start(_answers)
    try:
        yield reg
    finally:
        reg.stop()


def _manifest(registry: LocalRegistry, repo: str, tag: str) -> tuple[str, dict]:
    resp = requests.get(
        f"http://{registry.address}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return resp.headers["Docker-Content-Digest"], resp.json()


def test_publish_with_image_pushes_the_versions_and_a_repush_uploads_nothing(
    registry, sequential, base: Path, run_cli, tmp_path: Path
):
    ref = f"{registry.address}/models/seq:1"
    code, out, err = run_cli(
        "publish", str(sequential.keras_path), "--base-path", str(base), "--model", "seq", "--image", ref
    )
    assert code == 0, err
    pushed = out["image"]
    digest, manifest = _manifest(registry, "models/seq", "1")
    assert pushed["reference"] == f"{ref}@{digest}"
    assert manifest["annotations"]["io.servedmodel.versions"] == "1"
    # The registry serves the version's files byte for byte (read the layer back, check its digest).
    layer = manifest["layers"][1]
    blob = requests.get(
        f"http://{registry.address}/v2/models/seq/blobs/{layer['digest']}", timeout=10
    ).content
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
    source_sha = json.loads(manifest["annotations"]["io.servedmodel.manifests"])["1"]["source_sha256"]
    assert source_sha == hashlib.sha256(sequential.keras_path.read_bytes()).hexdigest()
    assert pushed["model_bytes"] > 0 and pushed["image_bytes"] > 0

    code, again, err = run_cli(
        "image", "--from", str(base / "seq"), "--image", f"{registry.address}/models/seq:again"
    )
    assert code == 0, err
    assert again["image"]["manifest_digest"] == digest  # same versions, same digest
    assert "(0 blobs uploaded, 3 already there)" in err, err  # 2 layers and the config


def test_push_errors_say_what_failed(sequential, base: Path, run_cli):
    code, _, err = run_cli("publish", str(sequential.keras_path), "--base-path", str(base), "--model", "seq")
    assert code == 0, err
    port = _free_port()  # nothing listens there
    code, out, err = run_cli("image", "--from", str(base / "seq"), "--image", f"127.0.0.1:{port}/seq:1")
    assert code == 6
    assert f"cannot reach the registry 127.0.0.1:{port}" in out["error"]["message"]
    code, out, _ = run_cli("image", "--from", str(base / "seq"), "--image", "127.0.0.1:5000/Seq:1")
    assert code == 2 and "repository must be lowercase" in out["error"]["message"]
