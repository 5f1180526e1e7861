"""The stand-in runs the container the operator renders: its command, its exact args, its probes.

The Deployment and ConfigMap come from the operator's renderer for a typical ServedModel (labels,
batching, metrics). The program is started with the rendered args; only the two volume mount paths are
mapped to temp folders, as the kubelet's mounts would (the ConfigMap's files and the model volume).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import requests
import tensorflow as tf
from servedmodel_operator.render import render
from servedmodel_operator.spec import parse
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tfsd_helpers import DOUBLE_DIR, wait_until

X = np.array([[0.5, -1.0, 2.0, 1.5]], dtype=np.float32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _servedmodel(grpc_port: int, rest_port: int) -> dict:
    return {
        "metadata": {"name": "ranker", "namespace": "ml", "uid": "u-1", "generation": 1},
        "spec": {
            "storage": {"persistentVolumeClaim": {"claimName": "models"}, "path": "ranker"},
            "ports": {"grpc": grpc_port, "rest": rest_port},
            "versionPolicy": {"specific": {"versions": [1, 2]}},
            "versionLabels": {"stable": 1},
            "batching": {"maxBatchSize": 8, "allowedBatchSizes": [4, 8]},
            "monitoring": {"prometheus": {}},
        },
    }


def test_rendered_container_runs_and_answers(keras_versions, tmp_path: Path) -> None:
    grpc_port, rest_port = _free_port(), _free_port()
    objects = {o["kind"]: o for o in render(parse(_servedmodel(grpc_port, rest_port)))}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["/usr/bin/tensorflow_model_server"]
    assert container["args"] == [
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        "--model_config_file=/etc/servedmodel/models.config",
        "--model_config_file_poll_wait_seconds=10",
        "--file_system_poll_wait_seconds=2",
        "--allow_version_labels_for_unavailable_models",
        "--enable_batching",
        "--batching_parameters_file=/etc/servedmodel/batching.config",
        "--monitoring_config_file=/etc/servedmodel/monitoring.config",
    ]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": grpc_port, "rest": rest_port}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["models"] == "/models" and mounts["config"] == "/etc/servedmodel"

    # What the kubelet mounts: the ConfigMap's files, and the claim with two published versions.
    on_node = {"/etc/servedmodel": tmp_path / "config", "/models": tmp_path / "volume"}

    def mapped(text: str) -> str:
        for mount_path, folder in on_node.items():
            text = text.replace(mount_path + "/", f"{folder}/").replace(f'"{mount_path}"', f'"{folder}"')
        return text

    on_node["/etc/servedmodel"].mkdir()
    for name, content in objects["ConfigMap"]["data"].items():
        (on_node["/etc/servedmodel"] / name).write_text(mapped(content))
    models_config = (on_node["/etc/servedmodel"] / "models.config").read_text()
    assert f'base_path: "{on_node["/models"]}/ranker"' in models_config
    for version in (1, 2):
        shutil.copytree(keras_versions.base / str(version), on_node["/models"] / "ranker" / str(version))

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TFSERVING_DOUBLE_BIND_ADDRESS": "127.0.0.1"}
    args = [mapped(a) for a in container["args"]]
    proc = subprocess.Popen(
        [sys.executable, str(DOUBLE_DIR / "tensorflow_model_server"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    rest = f"http://127.0.0.1:{ports[container['readinessProbe']['httpGet']['port']]}"

    def probe(name: str) -> int:
        try:
            return requests.get(rest + container[name]["httpGet"]["path"], timeout=5).status_code
        except requests.ConnectionError:
            return 0

    try:
        assert wait_until(lambda: probe("startupProbe") == 200 or proc.poll() is not None, timeout=120)
        assert proc.poll() is None, proc.communicate()
        assert probe("readinessProbe") == 200 and probe("livenessProbe") == 200

        # Readiness needs one servable version; the policy's two load one after the other.
        def available() -> set[str]:
            status = requests.get(f"{rest}/v1/models/ranker", timeout=5).json()
            return {v["version"] for v in status["model_version_status"] if v["state"] == "AVAILABLE"}

        assert wait_until(lambda: available() == {"1", "2"}, timeout=120), available()

        body = {"instances": X.tolist()}
        stable = requests.post(f"{rest}/v1/models/ranker/labels/stable:predict", json=body, timeout=30)
        assert stable.status_code == 200, stable.text
        got = np.array([row["score"] for row in stable.json()["predictions"]])
        np.testing.assert_allclose(got, keras_versions.expected(1, X)["score"], atol=1e-5)

        with grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}") as channel:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "ranker"
            request.inputs["features"].CopyFrom(tf.make_tensor_proto(X))
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        assert response.model_spec.version.value == 2
        np.testing.assert_allclose(
            tf.make_ndarray(response.outputs["probs"]), keras_versions.expected(2, X)["probs"], atol=1e-5
        )
        metrics = requests.get(f"{rest}/monitoring/prometheus/metrics", timeout=5)
        assert metrics.status_code == 200 and ":tensorflow:serving:request_count" in metrics.text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert "unknown argument" not in out, "every rendered flag is one the server knows"
    assert f"Exporting HTTP/REST API at:localhost:{rest_port}" in err
