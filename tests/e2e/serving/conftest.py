"""The serving path for real: ServedModels on the real node (containerd + kubelet + kube-proxy + CoreDNS),
with the TF Serving stand-in image, the exporter image, a hostPath volume and the operator.

Why e2e, and why a control plane of their own: these tests run the product's images as pods and drive the
whole path a user has (export, volume, kubelet probes, Services, DNS); and the operator they run must be
the only one acting on their ServedModels (the session's operator, which watches the other tests' `t-*`
namespaces, answers model-server polls from a loopback stand-in). So this package starts its own cluster
with a real node and no kwok node.

How the operator reaches the model servers: it runs as a process in the node's network namespace, with the
cluster DNS as its resolver: the network a pod has, so its default `http://{service}.{namespace}.svc:{port}`
works as in a cluster. The "laptop" operator of the unreachable-server test runs in the host's namespace,
where cluster names and ClusterIPs route nowhere.

Namespaces enforce Pod Security `restricted`. Nothing skips: a part that cannot be built or started fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chartrights import chart_rules_watching_namespaces, grant_chart_rights
from kerasmodels import fixed_model
from kubehelpers import Kube, OperatorProcess
from localcluster import OPERATOR_USER, LocalCluster
from modelvolume import ModelVolume
from realnode import RealNode
from servedmodel_exporter.checkpoints import PAUSE_ENV, UPLOADING
from servinghelpers import EXPORTER_UID, LAPTOP_NAMESPACE, NAMESPACE, start_operator
from servinghelpers import servedmodel as serving_servedmodel

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tools" / "images"))


@pytest.fixture(scope="package")
def scluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    workdir = tmp_path_factory.mktemp("serving-controlplane")
    with LocalCluster(workdir=workdir, with_kwok=False, with_real_node=True) as cp:
        Kube(cp).install_servedmodel_crd()
        # The chart's rules with the one it adds when given namespaces to watch (kopf lists and watches
        # namespaces then): the operators here each watch one namespace.
        rules = chart_rules_watching_namespaces()
        grant_chart_rights(cp.kubectl, OPERATOR_USER, "servedmodel-operator-serving", rules)
        yield cp


@pytest.fixture(scope="package")
def skube(scluster: LocalCluster) -> Kube:
    return Kube(scluster)


@pytest.fixture(scope="package")
def node(scluster: LocalCluster) -> RealNode:
    assert scluster.real_node is not None
    return scluster.real_node


def _built_and_imported(node: RealNode, name: str) -> str:
    import images  # tools/images/images.py

    built = images.build(name)
    node.import_image(built.archive, built.ref)
    return built.ref


@pytest.fixture(scope="package")
def stand_in(node: RealNode) -> str:
    """The TF Serving stand-in image (tools/tfserving_double), in the node's runtime."""
    return _built_and_imported(node, "tfserving-double")


@pytest.fixture(scope="package")
def exporter_image(node: RealNode) -> str:
    return _built_and_imported(node, "exporter")


@dataclass
class KerasModels:
    """Two small Keras models with different weights (versions 'a' and 'b' of one model) and what Keras
    itself answers for the same inputs: the oracle of every prediction test."""

    models: dict[str, Any]
    files: dict[str, Path]

    def predict(self, variant: str, inputs: list[list[float]]) -> np.ndarray:
        return np.asarray(self.models[variant](np.asarray(inputs, dtype=np.float32)), dtype=np.float64)


@pytest.fixture(scope="package")
def volume() -> Iterator[ModelVolume]:
    """The model volume's host folder (world-traversable, as the pods' users need), the Keras sources
    under sources/, and a library of versions published once by the exporter."""
    vol = ModelVolume.create(prefix="servedmodel-serving-")
    try:
        yield vol
    finally:
        vol.remove()


@pytest.fixture(scope="package")
def keras_models(volume: ModelVolume) -> KerasModels:
    sources = volume.folder("sources")
    models, files = {}, {}
    for variant in ("a", "b"):
        models[variant] = fixed_model(variant)
        files[variant] = sources / f"{variant}.keras"
        models[variant].save(files[variant])
        volume.publish(files[variant], variant, 1, into=volume.library)
    (sources / "broken.keras").write_bytes(b"this is not a Keras file\n")
    return KerasModels(models, files)


def _namespace(kube: Kube, name: str, volume: ModelVolume) -> None:
    """A namespace enforcing Pod Security `restricted`, with the claim `models` bound to the volume."""
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
        }
    )
    kube.apply(volume.claim(name))


@pytest.fixture(scope="package")
def namespaces(skube: Kube, volume: ModelVolume) -> list[str]:
    for name in (NAMESPACE, LAPTOP_NAMESPACE):
        _namespace(skube, name, volume)
    return [NAMESPACE, LAPTOP_NAMESPACE]


@pytest.fixture(scope="package")
def serving_operator(
    scluster: LocalCluster, node: RealNode, namespaces: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = start_operator(scluster, tmp_path_factory.mktemp("serving-operator"), NAMESPACE, node)
    try:
        yield op
    finally:
        op.stop()
        print(f"\n--- serving operator log tail ---\n{op.tail(3000)}")


@pytest.fixture
def cleanup(skube: Kube) -> Iterator[list[tuple[str, str]]]:
    """ServedModels a test created, deleted after it (their pods hold ~700 MB each)."""
    created: list[tuple[str, str]] = []
    yield created
    for namespace, name in created:
        skube.kubectl("delete", "servedmodel", name, "-n", namespace, "--wait=false", check=False)


@pytest.fixture(scope="package")
def exporter_owned(volume: ModelVolume) -> Any:
    """Model folders export Jobs write to belong to the exporter's user (hostPath ignores fsGroup)."""
    return lambda model: volume.folder(model, owner=EXPORTER_UID)


@dataclass
class S3Models:
    """A real S3 server (SeaweedFS, tools/controlplane/objectstore.py) bound to the node's host-side
    address, which pods reach (as they reach the API server), with one bucket; the exporter publishes into
    it from the host as a user would, and ServedModels read it through their sync sidecars."""

    store: Any
    bucket: str
    access_key: str
    secret_key: str
    workdir: Path
    secret_name: str = "s3-credentials"

    @property
    def endpoint(self) -> str:
        return self.store.endpoint

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def _publish_cmd(self, source: Path, model: str, result: Path) -> list[str]:
        return [
            sys.executable, "-m", "servedmodel_exporter.cli", "publish", str(source),
            "--to", f"s3://{self.bucket}", "--model", model, "--endpoint-url", self.endpoint,
            "--result-file", str(result), "--quiet",
        ]  # fmt: skip

    def publish(self, source: Path, model: str) -> int:
        """`servedmodel-export publish SRC --to s3://<bucket> --model M`; the version it published."""
        result = self.workdir / f"result-{uuid.uuid4().hex[:8]}.json"
        proc = subprocess.run(
            self._publish_cmd(source, model, result), env=self.env(), capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return int(json.loads(result.read_text())["version"])

    def publish_here(self, source: Path, model: str) -> int:
        """The same publish in this process (TensorFlow already loaded): it returns right after the commit
        marker is written, with no process start or exit around it (what a timing needs)."""
        from servedmodel_exporter.cli import main as export_cli

        result = self.workdir / f"result-{uuid.uuid4().hex[:8]}.json"
        saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
        os.environ.update({k: v for k, v in self.env().items() if k in saved})
        try:
            assert export_cli(self._publish_cmd(source, model, result)[3:]) == 0
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return int(json.loads(result.read_text())["version"])

    def publish_paused(self, source: Path, model: str) -> subprocess.Popen:
        """A publisher that stops mid-upload (after its first object, long before its commit marker), to be
        killed there."""
        env = {**self.env(), PAUSE_ENV: UPLOADING}
        result = self.workdir / f"result-{uuid.uuid4().hex[:8]}.json"
        return subprocess.Popen(
            self._publish_cmd(source, model, result), env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
        )  # fmt: skip

    def uncommitted(self, model: str) -> list[int]:
        """Versions of `model` with objects in the bucket but no commit marker."""
        from servedmodel_exporter.objectstore import layout

        return layout.model_listing(self.client(), self.bucket, "", model).uncommitted

    def secret(self, name: str, key: str, secret: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "stringData": {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret},
        }

    def servedmodel(self, name: str, image: str, sync_image: str, secret: str = "") -> dict[str, Any]:
        s3 = {
            "bucket": self.bucket,
            "endpoint": self.endpoint,
            "credentials": {"secretName": secret or self.secret_name},
            "sizeLimit": "1Gi",
            "syncIntervalSeconds": 1,
            "syncImage": sync_image,
        }
        return serving_servedmodel(name, NAMESPACE, image, storage={"s3": s3})


@pytest.fixture(scope="package")
def s3(node: RealNode, skube: Kube, namespaces: list[str], tmp_path_factory) -> Iterator[S3Models]:
    from objectstore import ObjectStore  # tools/controlplane/objectstore.py

    admin = ("servedmodel-e2e", uuid.uuid4().hex)
    reader = ("servedmodel-e2e-reader", uuid.uuid4().hex)  # what the pods get: read and list only
    folder = tmp_path_factory.mktemp("objectstore")
    with ObjectStore(node.slot.host_ip, folder, credentials=admin, read_only_credentials=reader) as store:
        store.create_bucket("models")
        models = S3Models(store, "models", *admin, tmp_path_factory.mktemp("s3-publish"))
        skube.apply(models.secret(models.secret_name, *reader))
        yield models
