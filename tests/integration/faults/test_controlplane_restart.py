"""kube-apiserver and etcd restarted under a running operator: it reconnects by itself and keeps serving.

The same operator process (same pid, never restarted) must see a ServedModel created after each restart
(kopf's watches reconnect) and apply its children (our own `requests` session gets new connections).
"""

from __future__ import annotations

import pytest
from faulthelpers import apply_many, start_serving, wait_converged
from kubehelpers import eventually, servedmodel

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_operator_survives_apiserver_and_etcd_restarts(fcluster, fkube, fnamespace, spawn_operator):
    ns = fnamespace
    op = start_serving(spawn_operator, fkube, ns, "before", operator="restarts")

    fcluster.restart_apiserver(down_seconds=3)
    assert op.alive(), op.tail()
    apply_many(
        fkube,
        [
            servedmodel("after-apiserver", ns),
            servedmodel("before", ns, podAnnotations={"edited": "after-apiserver-restart"}),
        ],
    )
    wait_converged(
        fkube, ns, "ServedModels created/edited after the API server restart served", timeout=120, interval=2
    )

    fcluster.restart_etcd(down_seconds=3)
    assert op.alive(), op.tail()
    apply_many(fkube, [servedmodel("after-etcd", ns)])
    wait_converged(fkube, ns, "ServedModel created after the etcd restart served", timeout=120, interval=2)

    # A hand edit after both restarts is still noticed: the child watches reconnected too.
    fkube.kubectl(
        "-n", ns, "patch", "deployment", "after-etcd", "--type=merge", "-p", '{"spec":{"replicas":3}}'
    )
    eventually(
        lambda: fkube.get("deployment", "after-etcd", ns)["spec"]["replicas"] == 1,
        timeout=60,
        what="drift corrected after the restarts",
    )
    assert op.alive(), "the operator had to be restarted"
    assert op.proc.returncode is None
