"""Shared fixtures: a real local control plane, the CRD, and the real operator process.

The control plane is started once per test session, only when a test asks for it. If it cannot be built
or started, the tests that need it fail with the reason: they never skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubehelpers import Kube
from localcluster import OPERATOR_USER, LocalCluster, free_port

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "servedmodel.io_servedmodels.yaml"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cp = LocalCluster(workdir=tmp_path_factory.mktemp("controlplane"))
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kube(cluster: LocalCluster) -> Kube:
    """kubectl as cluster admin."""
    return Kube(cluster)


@pytest.fixture(scope="session")
def crd(kube: Kube) -> None:
    kube.kubectl("apply", "--server-side", "-f", str(CRD))
    kube.wait_established("servedmodels.servedmodel.io")


class OperatorProcess:
    """The operator, run as users run it, as a separate process with its own (non-admin) identity."""

    def __init__(self, cluster: LocalCluster, log_path: Path, env: dict[str, str]):
        self.cluster, self.log_path = cluster, log_path
        self.port = free_port()
        args = [
            sys.executable,
            "-m",
            "servedmodel_operator",
            "--verbose",
            f"--liveness=http://127.0.0.1:{self.port}/healthz",
        ]
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            args,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(cluster.operator_kubeconfig), **env},
            cwd=ROOT,
        )

    def wait_live(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"operator liveness endpoint did not answer in {timeout}s:\n{self.tail()}")

    def tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def operator_rbac(kube: Kube) -> None:
    """Rights for the operator's identity. The Helm chart's least-privilege role is tested separately."""
    kube.apply(f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: servedmodel-operator-test}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {OPERATOR_USER}}}]
""")


@pytest.fixture(scope="session")
def operator(
    cluster: LocalCluster, crd: None, operator_rbac: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    # A short resync so the tests can watch the level-based safety net do (nothing) in seconds.
    # No kubelet runs TF Serving here: model servers are TF Serving test doubles on loopback, reached on the
    # REST port a ServedModel names (the tests give each double its own free port).
    op = OperatorProcess(
        cluster,
        log_path,
        {"SERVEDMODEL_RESYNC_SECONDS": "4", "SERVEDMODEL_MODEL_SERVER_URL": "http://127.0.0.1:{port}"},
    )
    try:
        op.wait_live()
        yield op
    finally:
        op.stop()
        print(f"\n--- operator log tail ---\n{op.tail(3000)}")


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)
