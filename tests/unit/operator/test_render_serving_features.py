"""Autoscaling, disruption budgets, GPUs, batching and monitoring: rendering, with the config files parsed
by TF Serving's message definitions (compiled here with protoc, since the PyPI package lacks them)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from servedmodel_operator.constants import ANNOTATION_RESTART_CHECKSUM, DEFAULT_IMAGE
from servedmodel_operator.render import render, render_batching_config, render_monitoring_config
from servedmodel_operator.spec import InvalidSpec, parse

PROTOS = Path(__file__).parent / "protos"


@pytest.fixture(scope="module")
def tf_serving_protos(tmp_path_factory):
    """BatchingParameters and MonitoringConfig compiled with grpcio-tools' protoc."""
    import grpc_tools

    out = tmp_path_factory.mktemp("protos")
    include = Path(grpc_tools.__file__).parent / "_proto"
    for name in ("session_bundle_config.proto", "monitoring_config.proto"):
        # In a child process: protoc inside a process that has loaded TensorFlow can crash it.
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTOS}",
                f"-I{include}",
                f"--python_out={out}",
                str(PROTOS / name),
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, f"protoc failed on {name}: {proc.stderr}"
    sys.path.insert(0, str(out))
    try:
        yield (
            importlib.import_module("session_bundle_config_pb2"),
            importlib.import_module("monitoring_config_pb2"),
        )
    finally:
        sys.path.remove(str(out))


def body(**spec):
    base = {"storage": {"persistentVolumeClaim": {"claimName": "models"}, "path": "m"}}
    base.update(spec)
    return {"metadata": {"name": "m", "namespace": "ns", "uid": "u"}, "spec": base}


def kinds(objects):
    return [o["kind"] for o in objects]


@pytest.mark.parametrize(
    "batching",
    [
        {},
        {"maxBatchSize": 64, "batchTimeoutMicros": 500, "numBatchThreads": 8, "maxEnqueuedBatches": 1000},
        {"maxBatchSize": 32, "allowedBatchSizes": [8, 16, 32], "padVariableLengthInputs": True},
    ],
)
def test_batching_file_parses_as_batching_parameters(tf_serving_protos, batching):
    batching_pb2, _ = tf_serving_protos
    spec = parse(body(batching=batching))
    params = text_format.Parse(render_batching_config(spec), batching_pb2.BatchingParameters())
    assert params.max_batch_size.value == batching.get("maxBatchSize", 32)
    assert params.batch_timeout_micros.value == batching.get("batchTimeoutMicros", 1000)
    assert params.num_batch_threads.value == batching.get("numBatchThreads", 4)
    assert params.max_enqueued_batches.value == batching.get("maxEnqueuedBatches", 100)
    assert list(params.allowed_batch_sizes) == batching.get("allowedBatchSizes", [])
    assert params.pad_variable_length_inputs is batching.get("padVariableLengthInputs", False)
    cm, _, dep = render(spec)[:3]
    assert "batching.config" in cm["data"]
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--enable_batching" in args  # the file without the flag is a start-up error (reference 3)
    assert "--batching_parameters_file=/etc/servedmodel/batching.config" in args


def test_batching_sizes_must_end_at_the_max():
    with pytest.raises(InvalidSpec, match="end with batching.maxBatchSize"):
        parse(body(batching={"maxBatchSize": 32, "allowedBatchSizes": [8, 16]}))


def test_batching_change_rolls_pods_but_policy_change_does_not():
    a = render(parse(body(batching={"maxBatchSize": 32})))[2]["spec"]["template"]["metadata"]["annotations"]
    b = render(parse(body(batching={"maxBatchSize": 64})))[2]["spec"]["template"]["metadata"]["annotations"]
    c = render(parse(body(batching={"maxBatchSize": 32}, versionPolicy={"all": {}})))[2]["spec"]["template"]
    assert a[ANNOTATION_RESTART_CHECKSUM] != b[ANNOTATION_RESTART_CHECKSUM]
    assert c["metadata"]["annotations"][ANNOTATION_RESTART_CHECKSUM] == a[ANNOTATION_RESTART_CHECKSUM]


def test_monitoring_file_parses_and_service_is_annotated(tf_serving_protos):
    _, monitoring_pb2 = tf_serving_protos
    spec = parse(body(monitoring={"prometheus": {"path": "/metrics/tf"}}))
    cfg = text_format.Parse(render_monitoring_config(spec), monitoring_pb2.MonitoringConfig())
    assert cfg.prometheus_config.enable is True and cfg.prometheus_config.path == "/metrics/tf"
    cm, svc, dep = render(spec)
    assert (
        "--monitoring_config_file=/etc/servedmodel/monitoring.config"
        in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    assert svc["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8501",
        "prometheus.io/path": "/metrics/tf",
        "servedmodel.io/spec-hash": svc["metadata"]["annotations"]["servedmodel.io/spec-hash"],
    }
    assert "ServiceMonitor" not in kinds(render(spec))
    (monitor,) = [o for o in render(spec, service_monitor_api=True) if o["kind"] == "ServiceMonitor"]
    assert monitor["spec"]["endpoints"] == [{"port": "rest", "path": "/metrics/tf", "interval": "30s"}]
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "m"
    off = parse(body(monitoring={"prometheus": {"enabled": False}}))
    assert "ServiceMonitor" not in kinds(render(off, service_monitor_api=True))
    assert "monitoring.config" not in render(off)[0]["data"]


def test_autoscaling_renders_an_hpa_and_leaves_replicas_to_it():
    spec = parse(
        body(
            replicas=3,
            autoscaling={
                "minReplicas": 2,
                "maxReplicas": 10,
                "targetCPUUtilizationPercentage": 60,
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": "rps"},
                            "target": {"type": "AverageValue", "averageValue": "100"},
                        },
                    }
                ],
            },
        )
    )
    objects = render(spec)
    assert kinds(objects) == [
        "ConfigMap",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Deployment",  # pods last: a refused autoscaler or budget stops the apply before any pod starts
    ]
    hpa, pdb, dep = objects[2], objects[3], objects[4]
    assert "replicas" not in dep["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "m"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {
        "type": "Utilization",
        "averageUtilization": 60,
    }
    assert hpa["spec"]["metrics"][1]["type"] == "Pods"
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {
            "matchLabels": {"app.kubernetes.io/name": "tensorflow-serving", "app.kubernetes.io/instance": "m"}
        },  # every track
    }


def test_disruption_budget_only_with_more_than_one_replica():
    assert "PodDisruptionBudget" not in kinds(render(parse(body(replicas=1))))
    assert "PodDisruptionBudget" in kinds(render(parse(body(replicas=2))))
    assert "PodDisruptionBudget" not in kinds(
        render(parse(body(autoscaling={"minReplicas": 1, "maxReplicas": 4})))
    )


def test_gpus_select_the_gpu_image_and_tolerate_gpu_nodes():
    spec = parse(
        body(
            resources={"limits": {"nvidia.com/gpu": 1}},
            nodeSelector={"accelerator": "a100"},
            tolerations=[{"key": "dedicated", "operator": "Exists"}],
        )
    )
    pod = render(spec)[2]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"{DEFAULT_IMAGE}-gpu"
    assert pod["nodeSelector"] == {"accelerator": "a100"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Exists"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]
    chosen = parse(body(image="registry.local/tfs:custom", resources={"limits": {"nvidia.com/gpu": 2}}))
    assert (
        render(chosen)[2]["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/tfs:custom"
    )
    cpu = render(parse(body()))[2]["spec"]["template"]["spec"]
    assert cpu["containers"][0]["image"] == DEFAULT_IMAGE and "tolerations" not in cpu
