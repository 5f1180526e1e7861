"""A watched namespace deleted with its ServedModels: the operator forgets them and leaves it alone.

kopf stops watching a namespace as soon as its termination starts; ServedModels whose deletion is still on
its way then stay in the operator's caches. They used to be reconciled at every resync (4 s here) for the
rest of the operator's life, each child apply refused because the namespace was gone (the CI log of the
fuzz test's 250 ServedModels held 36 such ghosts). Now the first refusal that says the namespace or the
object is gone makes the operator forget them. Whether a ghost is left at all is a race this test does not
force (tests/unit/operator/test_reconciler_gone.py proves the forgetting on the real Reconciler); it checks
the whole path on a real API server: after the namespace is gone and two resyncs have passed, two more
resyncs write nothing there.
"""

from __future__ import annotations

import time

import pytest
from kubehelpers import eventually, pvc, servedmodel
from localcluster import OPERATOR_USER

pytestmark = pytest.mark.integration
RESYNC_LINE = "resync: "
MODELS = 40


def wait_resyncs(operator, count: int) -> None:
    seen = len(operator.text())
    eventually(
        lambda: operator.text()[seen:].count(RESYNC_LINE) >= count,
        timeout=30,
        what=f"{count} resyncs of every ServedModel the operator knows",
    )


def test_served_models_deleted_with_their_namespace_are_forgotten(kube, cluster, operator, namespace):
    # Many, so that some deletions may still be on their way when the namespace's termination starts. Their
    # Deployments are refused (a pod annotation the API server rejects): a ServedModel the operator still
    # believes in is tried again at every resync, and each try is a dry-run apply in the audit log.
    kube.apply(pvc("models", namespace))
    names = [f"doomed-{i}" for i in range(MODELS)]
    items = [servedmodel(n, namespace, podAnnotations={"bad key!": "x"}) for n in names]
    kube.apply({"apiVersion": "v1", "kind": "List", "items": items})
    for name in names:
        kube.wait_condition("servedmodel", name, namespace, "Ready", reason="ApplyFailed")

    kube.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s")
    wait_resyncs(operator, 2)  # a ghost's first try after the namespace is gone makes it forgotten
    since = time.time()
    wait_resyncs(operator, 2)
    writes = [
        f"{w['verb']} {w['requestURI']}"
        for w in cluster.audited_writes(OPERATOR_USER, since)
        if f"/namespaces/{namespace}/" in w["requestURI"]
    ]
    assert writes == [], "the operator still reconciles ServedModels of a deleted namespace"
