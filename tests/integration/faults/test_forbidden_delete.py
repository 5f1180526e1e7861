"""A delete the operator's role does not allow (an administrator trimmed the chart's ClusterRole): the
canary left behind keeps its share of the traffic, so the ServedModel says so in status, with the API
server's message, and the operator deletes it as soon as the right is granted, without a spec change.

It runs in the faults suite's own control plane, with an operator of its own (a ServiceAccount bound to the
chart's rules minus `delete` on Deployments): no other operator can do the delete in its place.
"""

from __future__ import annotations

import pytest
from chartrights import chart_rules, grant_chart_rights, without
from kubehelpers import condition, eventually, servedmodel
from localcluster import kubeconfig_text

pytestmark = pytest.mark.integration


def test_a_refused_canary_delete_shows_in_status_and_is_retried(
    fkube, fcluster, fnamespace, spawn_operator, tmp_path
):
    ns = fnamespace
    fkube.kubectl("create", "serviceaccount", "trimmed", "-n", ns)
    subject = {"kind": "ServiceAccount", "name": "trimmed", "namespace": ns}
    role = f"trimmed-{ns}"
    rules = chart_rules()
    grant_chart_rights(fkube.kubectl, "", role, without(rules, "delete", {"deployments"}), subject)
    try:
        token = fkube.kubectl("create", "token", "trimmed", "-n", ns, "--duration=1h").stdout.strip()
        kubeconfig = tmp_path / "trimmed.kubeconfig"
        kubeconfig.write_text(kubeconfig_text(fcluster.server, fcluster.ca_file, "trimmed", token))
        op = spawn_operator(name="trimmed", kubeconfig=kubeconfig)
        op.wait_live()

        fkube.apply(
            servedmodel("m", ns, versionPolicy={"specific": {"versions": [3]}}, canary={"version": 4})
        )
        eventually(lambda: fkube.get("deployment", "m-canary", ns), what="the canary Deployment")
        fkube.apply(servedmodel("m", ns, versionPolicy={"specific": {"versions": [3]}}))  # roll back

        def refused() -> dict:
            cond = condition(fkube.get("servedmodel", "m", ns), "Degraded")
            return cond if cond.get("reason") == "DeleteFailed" else {}

        cond = eventually(refused, timeout=60, what="Degraded=True, DeleteFailed")
        assert cond["status"] == "True", cond
        assert "Deployment 'm-canary'" in cond["message"], cond
        assert 'cannot delete resource "deployments"' in cond["message"], cond
        # What it may delete is deleted; the Deployment stays (and with it the canary's share of traffic).
        eventually(
            lambda: (
                fkube.get("configmap", "m-canary-config", ns) is None
                and fkube.get("service", "m-canary", ns) is None
            ),
            what="the canary's ConfigMap and Service deleted",
        )
        assert fkube.get("deployment", "m-canary", ns) is not None

        # The administrator restores the chart's rules: the next retry deletes it, status recovers.
        grant_chart_rights(fkube.kubectl, "", role, rules, subject)
        eventually(
            lambda: fkube.get("deployment", "m-canary", ns) is None, what="the canary Deployment deleted"
        )
        eventually(
            lambda: condition(fkube.get("servedmodel", "m", ns), "Degraded").get("status") == "False",
            what="Degraded=False",
        )
    finally:
        fkube.kubectl("delete", "clusterrolebinding,clusterrole", role, "--ignore-not-found", check=False)
