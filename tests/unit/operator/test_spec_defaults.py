"""One source of truth for defaults: every default the CRD declares is the default spec.py applies when the
field is absent (a ServedModel written before the CRD had it, or read from a cache the API server did not
default), and every CRD default is listed here, so a new one cannot be added to only one of the two."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml
from servedmodel_operator.spec import S3Storage, ServedModelSpec, parse

CRD = Path(__file__).resolve().parents[3] / "crds" / "servedmodel.io_servedmodels.yaml"

# CRD path (under spec) -> what parse() makes of the field when it is absent. Objects defaulted to {} only
# make their own fields' defaults apply; they are listed with None.
VIEW = {
    "storage.persistentVolumeClaim.readOnly": lambda s: s.claim_read_only,
    "storage.path": lambda s: s.path,
    "storage.image.pullPolicy": lambda s: s.model_image.pull_policy,
    "storage.s3.prefix": lambda s: s.s3.prefix,
    "storage.s3.region": lambda s: s.s3.region,
    "storage.s3.credentials.accessKeyIdKey": lambda s: s.s3.access_key_id_key,
    "storage.s3.credentials.secretAccessKeyKey": lambda s: s.s3.secret_access_key_key,
    "storage.s3.sizeLimit": lambda s: s.s3.size_limit,
    "storage.s3.syncIntervalSeconds": lambda s: s.s3.sync_interval_seconds,
    "versionPolicy.latest.numVersions": lambda s: s.version_policy.num_versions,
    "replicas": lambda s: s.replicas,
    "canary.replicas": lambda s: s.canary.replicas,
    "autoscaling.minReplicas": lambda s: s.autoscaling.min_replicas,
    "autoscaling.targetCPUUtilizationPercentage": lambda s: s.autoscaling.target_cpu,
    "batching.maxBatchSize": lambda s: s.batching.max_batch_size,
    "batching.batchTimeoutMicros": lambda s: s.batching.batch_timeout_micros,
    "batching.numBatchThreads": lambda s: s.batching.num_batch_threads,
    "batching.maxEnqueuedBatches": lambda s: s.batching.max_enqueued_batches,
    "batching.padVariableLengthInputs": lambda s: s.batching.pad_variable_length_inputs,
    "monitoring.prometheus": None,
    "monitoring.prometheus.enabled": lambda s: s.monitoring.prometheus,
    "monitoring.prometheus.path": lambda s: s.monitoring.path,
    "monitoring.serviceMonitor": None,
    "monitoring.serviceMonitor.enabled": lambda s: s.monitoring.service_monitor,
    "monitoring.serviceMonitor.interval": lambda s: s.monitoring.interval,
    "imagePullPolicy": lambda s: s.image_pull_policy,
    "ports": None,
    "ports.grpc": lambda s: s.grpc_port,
    "ports.rest": lambda s: s.rest_port,
    "server": None,
    "server.modelConfigPollSeconds": lambda s: s.config_poll_seconds,
    "server.fileSystemPollSeconds": lambda s: s.fs_poll_seconds,
    "server.startupTimeoutSeconds": lambda s: s.startup_timeout_seconds,
    "automountServiceAccountToken": lambda s: s.automount_token,
    "export.version": lambda s: s.export.version,
    "export.image": lambda s: s.export.image,
    "export.imagePullPolicy": lambda s: s.export.image_pull_policy,
    "export.warmupRequests": lambda s: s.export.warmup_requests,
    "export.timeoutSeconds": lambda s: s.export.timeout_seconds,
    "export.backoffLimit": lambda s: s.export.backoff_limit,
    "service": None,
    "service.type": lambda s: s.service_type,
}

# The smallest parent of each optional section, so that its fields' defaults are the ones that apply.
SECTIONS = {
    "canary": {"version": 2},
    "autoscaling": {"maxReplicas": 5},
    "batching": {},
    "monitoring": {},
    "export": {"source": {"path": "in/model.keras"}},
}


@functools.cache
def crd_defaults() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    found: dict[str, Any] = {}

    def walk(schema: dict[str, Any], path: list[str]) -> None:
        if "default" in schema:
            found[".".join(path)] = schema["default"]
        for key, sub in (schema.get("properties") or {}).items():
            walk(sub, [*path, key])

    walk(version["schema"]["openAPIV3Schema"]["properties"]["spec"], [])
    return found


def parsed(path: str) -> ServedModelSpec:
    spec: dict[str, Any] = {"storage": {"persistentVolumeClaim": {"claimName": "models"}}}
    if path.startswith("storage.image."):
        spec["storage"] = {"image": {"reference": "registry.example/models/m:1"}}
    if path.startswith("storage.s3."):
        spec["storage"] = {"s3": {"bucket": "models", "credentials": {"secretName": "s3"}}}
    top = path.split(".")[0]
    if top in SECTIONS:
        spec[top] = SECTIONS[top]
    return parse({"metadata": {"name": "m", "namespace": "ns"}, "spec": spec})


def test_every_crd_default_is_listed():
    assert set(crd_defaults()) == set(VIEW)


@pytest.mark.parametrize("path,default", sorted(crd_defaults().items()))
def test_spec_py_applies_the_crd_default(path, default):
    view = VIEW[path]
    if view is None:
        assert default == {}, f"{path}: an object default other than {{}} needs its own check"
        return
    assert view(parsed(path)) == default, path


# Dataclass fields with a default of their own (used by code that builds a spec without parse()) -> the CRD
# path whose default it must equal.
DATACLASS_DEFAULTS = {
    (ServedModelSpec, "replicas"): "replicas",
    (ServedModelSpec, "image_pull_policy"): "imagePullPolicy",
    (ServedModelSpec, "grpc_port"): "ports.grpc",
    (ServedModelSpec, "rest_port"): "ports.rest",
    (ServedModelSpec, "config_poll_seconds"): "server.modelConfigPollSeconds",
    (ServedModelSpec, "fs_poll_seconds"): "server.fileSystemPollSeconds",
    (ServedModelSpec, "startup_timeout_seconds"): "server.startupTimeoutSeconds",
    (ServedModelSpec, "service_type"): "service.type",
    (ServedModelSpec, "automount_token"): "automountServiceAccountToken",
    (S3Storage, "prefix"): "storage.s3.prefix",
    (S3Storage, "region"): "storage.s3.region",
    (S3Storage, "access_key_id_key"): "storage.s3.credentials.accessKeyIdKey",
    (S3Storage, "secret_access_key_key"): "storage.s3.credentials.secretAccessKeyKey",
    (S3Storage, "size_limit"): "storage.s3.sizeLimit",
    (S3Storage, "sync_interval_seconds"): "storage.s3.syncIntervalSeconds",
}


@pytest.mark.parametrize(
    "cls,attr,path",
    [pytest.param(c, a, p, id=f"{c.__name__}.{a}") for (c, a), p in DATACLASS_DEFAULTS.items()],
)
def test_the_dataclass_defaults_agree_with_the_crd(cls, attr, path):
    assert cls.__dataclass_fields__[attr].default == crd_defaults()[path]
