"""Fault tests get a control plane of their own: they restart its API server and etcd, and run (and kill)
operator processes of their own, which must not meet the session's operator or disturb other tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chartrights import chart_rules, grant_chart_rights
from kubehelpers import Kube, OperatorProcess, pvc
from localcluster import OPERATOR_USER, LocalCluster
from modelfleet import ModelServerFleet


class Operator(OperatorProcess):
    """The operator with the faults suite's identity (the chart's rules); verbose unless `cmd` replaces it."""

    def __init__(
        self,
        cluster: LocalCluster,
        log_path: Path,
        args: list[str],
        env: dict[str, str],
        cmd: list[str] | None = None,
        kubeconfig: Path | None = None,
    ):
        super().__init__(
            kubeconfig or cluster.operator_kubeconfig,
            log_path,
            args if cmd else ["--verbose", *args],
            env,
            cmd,
        )


@pytest.fixture(scope="package")
def fcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(workdir=tmp_path_factory.mktemp("faults-controlplane")) as cp:
        Kube(cp).install_servedmodel_crd()
        grant_chart_rights(cp.kubectl, OPERATOR_USER, "faults-operator", chart_rules())
        yield cp


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
    # Wait until it is gone: a fault test leaves hundreds of objects, and the next test's fresh operators
    # would otherwise spend their start-up on a namespace being torn down.
    fkube.kubectl("delete", "namespace", name, "--wait=true", "--timeout=180s", check=False)


@pytest.fixture(scope="package")
def fmodel_servers(fcluster: LocalCluster) -> Iterator[ModelServerFleet]:
    """The model servers of this package's own cluster (see tests/modelfleet.py)."""
    fleet = ModelServerFleet(fcluster)
    yield fleet
    fleet.close()


@pytest.fixture
def spawn_operator(fcluster: LocalCluster, fmodel_servers: ModelServerFleet, tmp_path: Path) -> Iterator[Any]:
    """Start operator processes; every one still running is stopped at the end of the test."""
    started: list[Operator] = []

    def spawn(
        *args: str,
        env: dict[str, str] | None = None,
        cmd: list[str] | None = None,
        name: str = "operator",
        kubeconfig: Path | None = None,
    ) -> Operator:
        op = Operator(
            fcluster,
            tmp_path / f"{name}-{len(started)}.log",
            list(args),
            {
                "SERVEDMODEL_RESYNC_SECONDS": "4",
                "SERVEDMODEL_MODEL_SERVER_URL": fmodel_servers.url_template,
                **(env or {}),
            },
            cmd,
            kubeconfig,
        )
        started.append(op)
        return op

    yield spawn
    for op in started:
        op.stop()
