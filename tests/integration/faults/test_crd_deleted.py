"""The ServedModel CRD deleted while the operator runs (an uninstall half done, a CRD re-created by hand or
by a GitOps tool): the operator stays up, says plainly that it waits for the CRD, and serves ServedModels
again once the CRD is back; one started before its CRD waits for it the same way. This package's control
plane is its own (conftest.py), so deleting the cluster-wide CRD touches no other test's objects; the CRD
is re-applied before each test ends."""

from __future__ import annotations

import time

import pytest
from faulthelpers import apply_many, wait_converged
from kubehelpers import SERVEDMODEL_CRD_NAME, eventually, servedmodel

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CRD_NAME = SERVEDMODEL_CRD_NAME
WAITING = f"the ServedModel CRD {CRD_NAME} is not installed"
RESUMED = f"the ServedModel CRD {CRD_NAME} is installed again"
STARTING = f"the ServedModel CRD {CRD_NAME} is installed: starting"


def says(op, text: str):
    """A check for `eventually`: the operator's log has `text`; an operator that exited fails it at once."""

    def check() -> bool:
        if not op.alive():
            raise RuntimeError(f"the operator exited with {op.proc.returncode}:\n{op.tail(6000)}")
        return text in op.text()

    return check


def test_operator_waits_for_a_deleted_crd_and_resumes_when_it_returns(
    fcluster, fkube, fnamespace, spawn_operator
):
    ns = fnamespace
    op = spawn_operator(name="crd-deleted")
    op.wait_live()
    apply_many(fkube, [servedmodel("before", ns)])
    # Reconciled (children rendered, status for the current generation); whether kwok's pods are Ready
    # yet does not matter here.
    wait_converged(fkube, ns, "reconciled before the CRD is deleted", timeout=120, ready=False)

    try:
        # Deleting the CRD deletes every ServedModel; their children go with them (owner references).
        fkube.kubectl("delete", "crd", CRD_NAME, "--wait=true", "--timeout=120s")
        eventually(says(op, WAITING), timeout=60, interval=1, what="the operator to say it waits for the CRD")
        # Quiet window (the one place a test waits on time): the operator keeps polling and stays up.
        time.sleep(5)
        assert op.alive(), f"the operator exited while the CRD was missing:\n{op.tail()}"
        op.wait_live(timeout=10)
    finally:
        fkube.install_servedmodel_crd()

    eventually(says(op, RESUMED), timeout=120, interval=1, what="the operator to see the CRD again")
    apply_many(fkube, [servedmodel("after", ns)])
    wait_converged(fkube, ns, "reconciled after the CRD is back", timeout=120, interval=1, ready=False)
    deployment = fkube.get("deployment", "after", ns)
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["name"] == "tensorflow-serving"
    assert fkube.get("servedmodel", "before", ns) is None  # went with the CRD, and was not brought back
    assert op.alive(), op.tail()


def test_operator_started_before_its_crd_waits_for_it(fcluster, fkube, fnamespace, spawn_operator):
    ns = fnamespace
    fkube.kubectl("delete", "crd", CRD_NAME, "--wait=true", "--timeout=120s")
    try:
        op = spawn_operator(name="crd-later")
        eventually(says(op, WAITING), timeout=60, interval=1, what="the operator to say it waits for the CRD")
    finally:
        fkube.install_servedmodel_crd()
    eventually(says(op, STARTING), timeout=60, interval=1, what="the operator to start")
    op.wait_live()
    apply_many(fkube, [servedmodel("late", ns)])
    wait_converged(fkube, ns, "reconciled", timeout=120, interval=1, ready=False)
    deployment = fkube.get("deployment", "late", ns)
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["name"] == "tensorflow-serving"
    assert op.alive(), op.tail()
