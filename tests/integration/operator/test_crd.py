"""The API server enforces the ServedModel schema: defaults, bounds and CEL rules, with clear messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubehelpers import create_under_an_older_crd, servedmodel

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_accepted(kube, crd, namespace, example):
    proc = kube.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(example), "-o", "json")
    obj = json.loads(proc.stdout)
    assert obj["kind"] == "ServedModel"
    storage = obj["spec"]["storage"]
    if "image" in storage:
        assert storage["image"]["pullPolicy"] == "IfNotPresent"  # the CRD's default
    elif "s3" in storage:
        assert storage["s3"]["region"] == "us-east-1"  # the CRD's default
    else:
        assert storage["persistentVolumeClaim"]["claimName"] == "models"


def test_an_image_as_storage_is_accepted_with_its_defaults(kube, crd, namespace):
    body = servedmodel("img", namespace, storage={"image": {"reference": "127.0.0.1:5000/models/img:1"}})
    obj = json.loads(
        kube.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=yaml.safe_dump(body)).stdout
    )
    assert obj["spec"]["storage"]["image"] == {
        "reference": "127.0.0.1:5000/models/img:1",
        "pullPolicy": "IfNotPresent",
    }


def test_an_s3_bucket_as_storage_is_accepted_with_its_defaults(kube, crd, namespace):
    s3 = {"bucket": "models", "endpoint": "http://10.200.1.1:8333", "credentials": {"secretName": "s3"}}
    body = servedmodel("s3", namespace, storage={"s3": s3})
    obj = json.loads(
        kube.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=yaml.safe_dump(body)).stdout
    )
    assert obj["spec"]["storage"]["s3"] == {
        "bucket": "models",
        "endpoint": "http://10.200.1.1:8333",
        "prefix": "",
        "region": "us-east-1",
        "credentials": {
            "secretName": "s3",
            "accessKeyIdKey": "AWS_ACCESS_KEY_ID",
            "secretAccessKeyKey": "AWS_SECRET_ACCESS_KEY",
        },
        "sizeLimit": "10Gi",
        "syncIntervalSeconds": 10,
    }


def test_defaults_are_filled_by_the_api_server(kube, crd, namespace):
    obj = json.loads(
        kube.kubectl(
            "apply",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
            input=yaml.safe_dump(servedmodel("d", namespace)),
        ).stdout
    )
    spec = obj["spec"]
    # Not defaulted: a server-side default would stay behind when a user switches to another policy kind.
    assert "versionPolicy" not in spec
    assert spec["ports"] == {"grpc": 8500, "rest": 8501}
    assert spec["replicas"] == 1
    assert spec["storage"]["persistentVolumeClaim"]["readOnly"] is True
    assert spec["server"] == {
        "modelConfigPollSeconds": 10,
        "fileSystemPollSeconds": 2,
        "startupTimeoutSeconds": 600,
    }


BAD = [
    ({"ports": {"grpc": 9000, "rest": 9000}}, "ports.grpc and ports.rest must differ"),
    ({"versionPolicy": {"latest": {"numVersions": 1}, "all": {}}}, "exactly one of latest, specific or all"),
    (
        {"versionPolicy": {"specific": {"versions": [1, 2]}}, "versionLabels": {"stable": 3}},
        "must point at a version listed in versionPolicy.specific.versions",
    ),
    ({"versionLabels": {"bad-label": 1}}, "version label names may contain only letters"),
    ({"storage": {"persistentVolumeClaim": {"claimName": "m"}, "path": "/abs"}}, "must not start with '/'"),
    ({"storage": {"persistentVolumeClaim": {"claimName": "m"}, "path": "a/../b"}}, "must not contain '..'"),
    ({"server": {"extraArgs": ["--port=1"]}}, "must not set flags the operator manages"),
    ({"server": {"extraArgs": ["verbose"]}}, "must be flags starting with '--'"),
    ({"podLabels": {"app.kubernetes.io/name": "x"}}, "the operator owns them"),
    ({"replicas": -1}, "spec.replicas"),
    ({"modelName": "no/slash"}, "spec.modelName"),
    ({"imagePullPolicy": "Sometimes"}, "Unsupported value"),
    ({"storage": {"path": "x"}}, "storage must set exactly one source: persistentVolumeClaim, s3 or image"),
    (
        {"storage": {"persistentVolumeClaim": {"claimName": "m"}, "image": {"reference": "r.example/m:1"}}},
        "storage must set exactly one source: persistentVolumeClaim, s3 or image",
    ),
    ({"storage": {"image": {}}}, "spec.storage.image.reference: Required value"),
    ({"storage": {"image": {"reference": "r.example/m:1", "pullPolicy": "Daily"}}}, "Unsupported value"),
    ({"storage": {"image": {"reference": "r.example/m :1"}}}, "must not contain whitespace"),
    (
        {"storage": {"image": {"reference": "r.example/m:1"}}, "export": {"source": {"path": "m.keras"}}},
        "spec.export publishes onto the claim, and storage.image has none",
    ),
    (
        {"storage": {"s3": {"bucket": "models"}, "image": {"reference": "r.example/m:1"}}},
        "storage must set exactly one source: persistentVolumeClaim, s3 or image",
    ),
    (
        {"storage": {"s3": {"bucket": "models"}, "persistentVolumeClaim": {"claimName": "m"}}},
        "storage must set exactly one source: persistentVolumeClaim, s3 or image",
    ),
    ({"storage": {"s3": {}}}, "spec.storage.s3.bucket: Required value"),
    ({"storage": {"s3": {"bucket": "Bad_Bucket"}}}, "spec.storage.s3.bucket: Invalid value"),
    ({"storage": {"s3": {"bucket": "models", "prefix": "/abs"}}}, "must not start with '/' or contain '..'"),
    ({"storage": {"s3": {"bucket": "models", "endpoint": "s3.example"}}}, "spec.storage.s3.endpoint"),
    ({"storage": {"s3": {"bucket": "models", "sizeLimit": "big"}}}, "spec.storage.s3.sizeLimit"),
    (
        {"storage": {"s3": {"bucket": "models", "syncIntervalSeconds": 0}}},
        "spec.storage.s3.syncIntervalSeconds",
    ),
    (
        {"storage": {"s3": {"bucket": "models", "credentials": {}}}},
        "spec.storage.s3.credentials.secretName: Required value",
    ),
    (
        {"storage": {"s3": {"bucket": "models"}}, "export": {"source": {"path": "m.keras"}}},
        "with storage.s3 there is no model volume to read export.source.path from",
    ),
    (
        {"storage": {"s3": {"bucket": "models"}}, "ports": {"rest": 8502}},
        "port 8502 is the sync sidecar's",
    ),
]


@pytest.mark.parametrize("spec,message", BAD, ids=[m for _, m in BAD])
def test_bad_specs_are_rejected_with_a_clear_message(kube, crd, namespace, spec, message):
    body = servedmodel("bad", namespace)
    body["spec"].update(spec)
    proc = kube.try_apply(body)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_labels_without_a_policy_are_accepted(kube, crd, namespace):
    proc = kube.try_apply(servedmodel("labels", namespace, versionLabels={"stable": 2}))
    assert proc.returncode == 0, proc.stderr


def test_names_that_cannot_name_a_service_are_rejected(kube, crd, namespace):
    proc = kube.try_apply(servedmodel("my.model", namespace))
    assert proc.returncode != 0 and "must be a DNS label" in proc.stderr, proc.stderr


def test_a_name_stored_before_the_name_rule_stays_writable_and_deletable(kube, crd, namespace):
    """An upgrade must not strand objects an older CRD let in: their status, finalizers and spec can still be
    written (the operator reports InvalidSpec there), and they can be deleted."""
    create_under_an_older_crd(kube, servedmodel("old.name", namespace))
    status = {"status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False"}]}}
    patches = [
        (["--subresource=status"], status),
        ([], {"metadata": {"finalizers": ["servedmodel.io/test"]}}),
        ([], {"spec": {"replicas": 2}}),
        ([], {"metadata": {"finalizers": None}}),
    ]
    for extra, patch in patches:
        args = ["-n", namespace, "patch", "servedmodel", "old.name", "--type=merge", *extra]
        proc = kube.kubectl(*args, "-p", json.dumps(patch), check=False)
        assert proc.returncode == 0, f"{patch}: {proc.stderr}"
    # The spec edit stuck (the status may be the operator's by now: it watches this namespace).
    assert kube.get("servedmodel", "old.name", namespace)["spec"]["replicas"] == 2
    kube.kubectl("-n", namespace, "delete", "servedmodel", "old.name", "--wait=true", "--timeout=30s")
    assert kube.get("servedmodel", "old.name", namespace) is None


def test_printer_columns(kube, crd):
    crd_obj = json.loads(kube.kubectl("get", "crd", "servedmodels.servedmodel.io", "-o", "json").stdout)
    (version,) = crd_obj["spec"]["versions"]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names[:5] == ["Model", "Ready", "Versions", "Replicas", "Available"]
    assert crd_obj["spec"]["names"]["shortNames"] == ["sm"]


CROSS_FIELD = [
    (
        {"ports": {"grpc": 9000, "rest": 9000}},
        "spec.ports.rest",
        "disables REST when they are equal): both are 9000",
    ),
    (
        {"versionPolicy": {"specific": {"versions": [1, 2]}}, "versionLabels": {"stable": 1, "next": 3}},
        "spec.versionLabels",
        'not listed: ["next=3"] (versionPolicy.specific.versions: [1, 2])',
    ),
    (
        {"autoscaling": {"minReplicas": 4, "maxReplicas": 2}},
        "spec.autoscaling.maxReplicas",
        "autoscaling.maxReplicas (2) must be at least autoscaling.minReplicas (4)",
    ),
    (
        {"batching": {"maxBatchSize": 64, "allowedBatchSizes": [8, 32]}},
        "spec.batching.allowedBatchSizes",
        "must increase and end with batching.maxBatchSize (64): got [8, 32]",
    ),
]


@pytest.mark.parametrize("spec,field,message", CROSS_FIELD, ids=[f for _, f, _ in CROSS_FIELD])
def test_cross_field_rules_name_the_field_and_the_value_at_fault(kube, crd, namespace, spec, field, message):
    body = servedmodel("bad", namespace)
    body["spec"].update(spec)
    proc = kube.try_apply(body)
    assert proc.returncode != 0
    assert f"{field}: Invalid value" in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr
