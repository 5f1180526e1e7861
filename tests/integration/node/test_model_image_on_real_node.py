"""storage.image end to end on the real node: a Keras model exported into an OCI image, pushed to a local
registry, pulled by the node's containerd and served by the model server pods.

The registry (docker-registry) listens on 127.0.0.1:5000 of the node's network namespace: the exporter
pushes there (run in that namespace) and containerd pulls from there over plain HTTP, as it does for any
loopback registry. Requests go through the model's Service from the node's namespace, as clients in the
cluster send them. The oracle is Keras itself: predictions equal the model's own within float tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from kubehelpers import condition, eventually, servedmodel  # noqa: E402
from localregistry import LocalRegistry  # noqa: E402
from servedmodel_exporter.cli import main as export_cli  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
REGISTRY_PORT = 5000  # in the node's own network namespace: nothing else listens there
SAMPLES = np.random.default_rng(3).standard_normal((4, 4)).astype("float32")

# A bounded client: POSTs :predict every 50 ms until the stop file appears or the time limit passes, and
# appends every answer as a JSON line (time, HTTP status or 0, predictions or the error).
CLIENT = r"""
import json, os, sys, time, urllib.request
url, body, out, stop, limit = sys.argv[1:6]
end = time.monotonic() + float(limit)
with open(out, "a") as log:
    while time.monotonic() < end and not os.path.exists(stop):
        started = time.time()
        try:
            req = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                answer = [started, resp.status, json.loads(resp.read())["predictions"]]
        except Exception as exc:
            answer = [started, 0, repr(exc)]
        log.write(json.dumps(answer) + "\n")
        log.flush()
        time.sleep(0.05)
"""


def _answers(path: Path) -> list[list]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("]")]


@pytest.fixture(scope="module")
def registry(real_node, tmp_path_factory) -> Iterator[LocalRegistry]:
    def answers(url: str) -> bool:
        return real_node.run_in_netns(["curl", "-sf", "-o", "/dev/null", url], timeout=5).returncode == 0

    reg = LocalRegistry(tmp_path_factory.mktemp("registry"), REGISTRY_PORT, wrap=real_node.slot.nsenter)
    reg.start(answers)
    try:
        yield reg
    finally:
        reg.stop()


def _model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((4,), name="features"), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)]
    )


def _push(real_node, model_dir: Path, ref: str) -> dict:
    """`servedmodel-export image` run in the node's namespace, where the registry is on loopback."""
    proc = real_node.run_in_netns(
        [
            sys.executable,
            "-m",
            "servedmodel_exporter.cli",
            "image",
            "--from",
            str(model_dir),
            "--image",
            ref,
            "--json",
        ],
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["image"]


def _wait_serving(kube, namespace: str, digest: str, what: str, interval: float = 1) -> dict:
    """The status once every ready pod serves `digest` and the roll is over."""

    def serving(obj: dict) -> bool:
        st = obj.get("status") or {}
        return (
            st.get("observedGeneration") == obj["metadata"]["generation"]
            and condition(obj, "Ready").get("status") == "True"
            and condition(obj, "Progressing").get("status") == "False"
            and (st.get("image") or {}).get("digest") == digest
        )

    return kube.wait_until("servedmodel", "iris", namespace, serving, what, 300, interval)["status"]


def _pod_names(kube, namespace: str) -> set[str]:
    return {p["metadata"]["name"] for p in kube.list("pods", namespace, "app.kubernetes.io/instance=iris")}


def _wait_gone(kube, namespace: str, pods: set[str]) -> None:
    """Until these pods no longer exist. A rollout is complete (in the Deployment's status and ours) as soon
    as the new pods are ready and the old ones are told to stop; an old pod keeps answering through the
    Service until kube-proxy has dropped it (its preStop sleep covers that), so "only the new version
    answers" holds once the old pods are gone, not before."""
    eventually(lambda: not (_pod_names(kube, namespace) & pods), timeout=120, interval=0.5,
               what=f"old pods {sorted(pods)} gone")  # fmt: skip


def _predict(real_node, kube, namespace: str) -> np.ndarray:
    ip = kube.get("service", "iris", namespace)["spec"]["clusterIP"]
    body = json.dumps({"instances": SAMPLES.tolist()})
    proc = real_node.run_in_netns(
        [
            "curl",
            "-sSf",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            f"http://{ip}:8501/v1/models/iris:predict",
        ],
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return np.array(json.loads(proc.stdout)["predictions"])


def test_a_model_image_is_served_rolled_and_rolled_back(
    kube, operator, namespace, real_node, node_image, registry, tmp_path
):
    server = node_image("tfserving-double")
    base = tmp_path / "models"
    first, second = _model(1), _model(2)
    expected = {1: first(SAMPLES).numpy(), 2: second(SAMPLES).numpy()}
    assert not np.allclose(expected[1], expected[2], atol=1e-3)  # two versions a client can tell apart

    # 1. Keras -> version 1 -> image iris:1 (version 1), then version 2 -> image iris:2 (versions 1 and 2).
    first.save(tmp_path / "v1.keras")
    second.save(tmp_path / "v2.keras")
    assert (
        export_cli(["publish", str(tmp_path / "v1.keras"), "--base-path", str(base), "--model", "iris", "-q"])
        == 0
    )
    one = _push(real_node, base / "iris", f"{registry.address}/models/iris:1")
    assert (
        export_cli(["publish", str(tmp_path / "v2.keras"), "--base-path", str(base), "--model", "iris", "-q"])
        == 0
    )
    two = _push(real_node, base / "iris", f"{registry.address}/models/iris:2")
    assert (one["versions"], two["versions"]) == ([1], [1, 2])
    print(
        f"\nimage iris:1: {one['image_bytes']} bytes in the registry, SavedModel {one['model_bytes']} bytes"
        f"\nimage iris:2: {two['image_bytes']} bytes in the registry, SavedModels {two['model_bytes']} bytes"
    )

    def apply(reference: str) -> None:
        kube.apply(
            servedmodel(
                "iris",
                namespace,
                storage={"image": {"reference": reference}},
                image=server,
                imagePullPolicy="Never",
                replicas=1,
                **real_node.pod_placement(),
            )
        )

    # 2. Served from the image: the modelcar here (the test cluster's API server keeps the ImageVolume
    # feature gate at its 1.34 default, off), predictions equal Keras' for version 1.
    apply(f"{registry.address}/models/iris:1")
    st = _wait_serving(kube, namespace, one["manifest_digest"], "iris:1 served")
    assert st["image"]["mount"] == "modelcar" and "ImageVolume feature gate off" in st["image"]["mountReason"]
    pod_spec = kube.get("deployment", "iris", namespace)["spec"]["template"]["spec"]
    assert pod_spec["initContainers"][0]["image"] == f"{registry.address}/models/iris:1"
    np.testing.assert_allclose(_predict(real_node, kube, namespace), expected[1], rtol=1e-5, atol=1e-5)

    # 3. A new reference rolls the pods while a client keeps asking: no failed request, then version 2.
    out, stop = tmp_path / "client.json", tmp_path / "client.stop"
    ip = kube.get("service", "iris", namespace)["spec"]["clusterIP"]
    client = subprocess.Popen(
        real_node.slot.nsenter(
            sys.executable,
            "-c",
            CLIENT,
            f"http://{ip}:8501/v1/models/iris:predict",
            json.dumps({"instances": SAMPLES.tolist()}),
            str(out),
            str(stop),
            "300",
        )
    )
    try:
        eventually(lambda: len(_answers(out)) >= 10, timeout=60, what="the client's first answers")
        old_pods = _pod_names(kube, namespace)
        changed = time.time()
        apply(f"{registry.address}/models/iris:2")
        _wait_serving(kube, namespace, two["manifest_digest"], "iris:2 served", interval=0.5)
        rolled = time.time()
        _wait_gone(kube, namespace, old_pods)
        gone = time.time()
        eventually(
            lambda: sum(a[0] > gone for a in _answers(out)) >= 20, timeout=60, what="answers after the roll"
        )
    finally:
        stop.touch()
        client.wait(60)
    answers = _answers(out)
    failed = [a for a in answers if a[1] != 200]
    assert answers and failed == [], f"{len(failed)} of {len(answers)} requests failed: {failed[:3]}"
    versions = [
        1
        if np.allclose(a[2], expected[1], rtol=1e-5, atol=1e-5)
        else 2
        if np.allclose(a[2], expected[2], rtol=1e-5, atol=1e-5)
        else None
        for a in answers
    ]
    assert None not in versions and versions[0] == 1 and versions[-1] == 2
    first_v2 = next(a[0] for a, v in zip(answers, versions, strict=True) if v == 2)
    assert all(v == 2 for a, v in zip(answers, versions, strict=True) if a[0] >= gone)
    print(
        f"reference change -> first answer from version 2: {first_v2 - changed:.1f} s; "
        f"-> rollout complete in status: {rolled - changed:.1f} s; {len(answers)} requests, 0 failed"
    )

    # 4. A reference that does not exist: a clear condition (Ready too: the spec is not served), and the
    # old pod keeps serving version 2 (maxUnavailable 0).
    missing = f"{registry.address}/models/iris:404"
    apply(missing)

    sm = kube.wait_condition(
        "servedmodel", "iris", namespace, "Degraded", reason="ModelImageNotFound", timeout=120, interval=1
    )
    degraded = condition(sm, "Degraded")
    assert (
        degraded["status"] == "True" and missing in degraded["message"] and "not found" in degraded["message"]
    )
    ready = condition(kube.get("servedmodel", "iris", namespace), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ModelImageNotFound")
    np.testing.assert_allclose(_predict(real_node, kube, namespace), expected[2], rtol=1e-5, atol=1e-5)

    # 5. Rolling back is an edit of the reference: version 1 again, from the same digest as before.
    old_pods = _pod_names(kube, namespace)
    apply(f"{registry.address}/models/iris:1")
    _wait_serving(kube, namespace, one["manifest_digest"], "iris:1 served again")
    _wait_gone(kube, namespace, old_pods)
    np.testing.assert_allclose(_predict(real_node, kube, namespace), expected[1], rtol=1e-5, atol=1e-5)
