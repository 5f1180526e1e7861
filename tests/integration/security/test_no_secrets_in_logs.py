"""The operator never logs secrets, even at -v (the session operator runs with --verbose): not its own API
token, not the values behind a ServedModel's secret references, not literal env values, also on the
error paths (a spec the API server rejects, a reference to a missing Secret)."""

from __future__ import annotations

import base64

import pytest
from kubehelpers import condition, eventually, pvc, servedmodel

pytestmark = pytest.mark.integration

SECRET_VALUE = "s3cr3t-value-7f9c2b"
LITERAL_VALUE = "literal-password-91ab"


def test_operator_logs_no_token_and_no_secret_values(cluster, kube, operator, namespace):
    ns = namespace
    start = len(operator.log_text())
    kube.apply(pvc("models", ns))
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": ns},
            "data": {"token": base64.b64encode(SECRET_VALUE.encode()).decode()},
        }
    )
    env = [
        {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "MISSING", "valueFrom": {"secretKeyRef": {"name": "does-not-exist", "key": "k"}}},
        {"name": "DB_PASSWORD", "value": LITERAL_VALUE},
    ]
    kube.apply(servedmodel("withsecrets", ns, env=env))
    # The error path: the API server rejects the Deployment, the operator reports and logs why.
    kube.apply(servedmodel("rejected", ns, env=[*env, {"name": "BAD", "valueFrom": {"fieldRef": {}}}]))
    eventually(
        lambda: (
            condition(kube.get("servedmodel", "withsecrets", ns), "Ready").get("reason")
            in ("ModelServing", "ReplicasNotReady")
        ),
        timeout=90,
        what="withsecrets reconciled",
    )
    kube.wait_condition(
        "servedmodel", "rejected", ns, "Ready", reason="ApplyFailed", timeout=90, what="rejected reported"
    )
    dep = kube.get("deployment", "withsecrets", ns)
    assert dep["spec"]["template"]["spec"]["containers"][0]["env"] == env  # passed through, by reference

    log = operator.log_text()[start:]
    assert f"{ns}/withsecrets" in log and f"{ns}/rejected" in log, "the operator did not log these at all"
    assert ": up to date" in operator.log_text(), "not running at -v (that line is logged at debug level)"
    token = cluster.operator_token
    for needle in (
        token,
        token[:16],
        SECRET_VALUE,
        base64.b64encode(SECRET_VALUE.encode()).decode(),
        LITERAL_VALUE,
    ):
        assert needle not in operator.log_text(), f"the operator log contains a secret ({needle[:4]}...)"
