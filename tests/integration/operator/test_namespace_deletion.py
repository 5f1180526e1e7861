"""A watched namespace deleted with its ServedModels: the operator sees them go and leaves it alone.

kopf used to stop watching a namespace as soon as its termination started; ServedModels whose deletion was
still on its way then stayed in the operator's caches, and every resync (4 s here) reconciled them again,
each child apply refused because the namespace was gone, for the rest of the operator's life (the CI log of
the fuzz test's 250 ServedModels held 36 such ghosts). Whether a deletion is on its way at that moment is a
race this test does not force: tests/unit/operator/test_terminating_namespaces.py and test_reconciler_gone.py
prove the two mechanisms on kopf's real code; this checks the whole path on a real API server.
"""

from __future__ import annotations

import time

import pytest
from kubehelpers import eventually, pvc, servedmodel
from localcluster import OPERATOR_USER

pytestmark = pytest.mark.integration
RESYNC_LINE = "resync: "
MODELS = 40


def test_served_models_deleted_with_their_namespace_are_not_reconciled_again(
    kube, cluster, operator, namespace
):
    # Many, so that their deletions are still on their way when the namespace's termination starts. Their
    # Deployments are refused (a pod annotation the API server rejects): a ServedModel the operator still
    # believes in is tried again at every resync, and each try is a dry-run apply in the audit log.
    kube.apply(pvc("models", namespace))
    names = [f"doomed-{i}" for i in range(MODELS)]
    items = [servedmodel(n, namespace, podAnnotations={"bad key!": "x"}) for n in names]
    kube.apply({"apiVersion": "v1", "kind": "List", "items": items})
    for name in names:
        kube.wait_condition("servedmodel", name, namespace, "Ready", reason="ApplyFailed")

    kube.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s")
    # kopf stops watching a namespace's ServedModels once the namespace is gone (no longer when it starts
    # terminating): by then the deletion of its content has reached the operator.
    stopped = f"Stopping the watch-stream for servedmodels.v1alpha1.servedmodel.io in '{namespace}'"
    eventually(lambda: stopped in operator.text(), timeout=30, what="the namespace's watch stopped")
    since, seen = time.time(), len(operator.text())
    eventually(
        lambda: operator.text()[seen:].count(RESYNC_LINE) >= 2,
        timeout=30,
        what="two resyncs of every ServedModel the operator knows",
    )
    writes = [
        f"{w['verb']} {w['requestURI']}"
        for w in cluster.audited_writes(OPERATOR_USER, since)
        if f"/namespaces/{namespace}/" in w["requestURI"]
    ]
    assert writes == [], "the operator still reconciles ServedModels of a deleted namespace"
