"""Fault tests get a control plane of their own: they restart its API server and etcd, and run (and kill)
operator processes of their own, which must not meet the session's operator or disturb other tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubehelpers import Kube, pvc
from localcluster import OPERATOR_USER, LocalCluster, free_port

ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "crds" / "servedmodel.io_servedmodels.yaml"


class Operator:
    """One operator process (`python -m servedmodel_operator` unless `cmd` is given), logging to a file."""

    def __init__(
        self,
        cluster: LocalCluster,
        log_path: Path,
        args: list[str],
        env: dict[str, str],
        cmd: list[str] | None = None,
    ):
        self.log_path = log_path
        self.port = free_port()
        base = cmd or [sys.executable, "-m", "servedmodel_operator", "--verbose"]
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [*base, f"--liveness=http://127.0.0.1:{self.port}/healthz", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(cluster.operator_kubeconfig), **env},
            cwd=ROOT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

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
            time.sleep(0.2)
        raise AssertionError(f"operator liveness endpoint did not answer in {timeout}s:\n{self.tail()}")

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, chars: int = 4000) -> str:
        return self.text()[-chars:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="package")
def fcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cp = LocalCluster(workdir=tmp_path_factory.mktemp("faults-controlplane"))
    cp.start()
    try:
        cp.kubectl("apply", "--server-side", "-f", str(CRD))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/servedmodels.servedmodel.io")
        cp.kubectl(
            "create",
            "clusterrolebinding",
            "faults-operator",
            "--clusterrole=cluster-admin",
            f"--user={OPERATOR_USER}",
        )
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="package")
def fkube(fcluster: LocalCluster) -> Kube:
    return Kube(fcluster)


@pytest.fixture
def fnamespace(fkube: Kube) -> Iterator[str]:
    """A namespace with a bound `models` claim."""
    name = f"f-{uuid.uuid4().hex[:8]}"
    fkube.kubectl("create", "namespace", name)
    fkube.apply(pvc("models", name))
    yield name
    fkube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def spawn_operator(fcluster: LocalCluster, tmp_path: Path) -> Iterator[Any]:
    """Start operator processes; every one still running is stopped at the end of the test."""
    started: list[Operator] = []

    def spawn(
        *args: str, env: dict[str, str] | None = None, cmd: list[str] | None = None, name: str = "operator"
    ) -> Operator:
        op = Operator(
            fcluster,
            tmp_path / f"{name}-{len(started)}.log",
            list(args),
            {"SERVEDMODEL_RESYNC_SECONDS": "4", **(env or {})},
            cmd,
        )
        started.append(op)
        return op

    yield spawn
    for op in started:
        op.stop()
