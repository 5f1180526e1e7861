"""kube-apiserver and etcd restarted under a running operator: it reconnects by itself and keeps serving.

The same operator process (same pid, never restarted) must see a ServedModel created after each restart
(kopf's watches reconnect) and apply its children (our own `requests` session gets new connections).
"""

from __future__ import annotations

import pytest
from faulthelpers import apply_many, assert_converged
from kubehelpers import eventually, servedmodel

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_operator_survives_apiserver_and_etcd_restarts(fcluster, fkube, fnamespace, spawn_operator):
    ns = fnamespace
    op = spawn_operator(name="restarts")
    op.wait_live()
    apply_many(fkube, [servedmodel("before", ns)])
    eventually(lambda: assert_converged(fkube, ns), timeout=60, what="first ServedModel served")

    fcluster.restart_apiserver(down_seconds=3)
    assert op.alive(), op.tail()
    apply_many(
        fkube,
        [
            servedmodel("after-apiserver", ns),
            servedmodel("before", ns, podAnnotations={"edited": "after-apiserver-restart"}),
        ],
    )
    eventually(
        lambda: assert_converged(fkube, ns),
        timeout=120,
        interval=2,
        what="ServedModels created/edited after the API server restart served",
    )

    fcluster.restart_etcd(down_seconds=3)
    assert op.alive(), op.tail()
    apply_many(fkube, [servedmodel("after-etcd", ns)])
    eventually(
        lambda: assert_converged(fkube, ns),
        timeout=120,
        interval=2,
        what="ServedModel created after the etcd restart served",
    )

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
