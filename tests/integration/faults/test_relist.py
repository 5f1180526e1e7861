"""A child deleted while the operator's watches were down, when they cannot resume (410 Gone) and relist:
the listing only shows what exists, so without relist.py kopf's caches keep the deleted Deployment and the
operator never recreates it. The gap is real: the operator is stopped (SIGSTOP), the API server restarted
(so the resumed watches' resourceVersion is older than its new watch cache), and the Deployment deleted."""

from __future__ import annotations

import os
import signal

import pytest
from faulthelpers import start_serving, wait_converged
from kubehelpers import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_child_deleted_during_a_watch_gap_is_recreated(fcluster, fkube, fnamespace, spawn_operator):
    ns = fnamespace
    op = start_serving(spawn_operator, fkube, ns, "gap", operator="relist")
    uid = fkube.get("deployment", "gap", ns)["metadata"]["uid"]

    os.kill(op.pid, signal.SIGSTOP)
    try:
        # Restarted first, so no DELETED event can wait in the stopped operator's old watch connections.
        fcluster.restart_apiserver(down_seconds=1)
        fkube.kubectl("-n", ns, "delete", "deployment", "gap", "--wait=true", "--timeout=60s")
    finally:
        os.kill(op.pid, signal.SIGCONT)

    recreated = eventually(
        lambda: (d := fkube.get("deployment", "gap", ns)) is not None and d["metadata"]["uid"] != uid and d,
        timeout=90,
        interval=1,
        what="the Deployment deleted during the gap to be recreated",
    )
    assert recreated["spec"]["template"]["spec"]["containers"][0]["name"] == "tensorflow-serving"
    assert "was deleted during the watch gap" in op.text(), op.tail()
    wait_converged(fkube, ns, "converged again", timeout=60)
