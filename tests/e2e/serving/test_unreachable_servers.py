"""Status tells the truth when the operator cannot reach the model servers: an operator run from outside
the cluster's network (a laptop with a kubeconfig) sees the pods turn Ready through the API, but cannot
ask TF Serving which versions it serves; the Ready condition says so and is never True on that
assumption, while the pods do serve."""

from __future__ import annotations

import pytest
from kubehelpers import condition
from servinghelpers import (
    INPUTS,
    LAPTOP_NAMESPACE,
    assert_close,
    pod_ready,
    pods,
    predict,
    servedmodel,
    start_operator,
    versions,
    wait_sm,
)

NAME = "laptop"


@pytest.fixture
def laptop_operator(scluster, namespaces, tmp_path):
    op = start_operator(scluster, tmp_path, LAPTOP_NAMESPACE, node=None)
    try:
        yield op
    finally:
        op.stop()
        print(f"\n--- laptop operator log tail ---\n{op.tail(2000)}")


def test_ready_is_not_claimed_when_the_model_server_cannot_be_asked(
    skube, node, stand_in, laptop_operator, keras_models, volume, cleanup
) -> None:
    volume.publish_copy(NAME, "a", 1)
    skube.apply(servedmodel(NAME, LAPTOP_NAMESPACE, stand_in))
    cleanup.append((LAPTOP_NAMESPACE, NAME))
    sm = wait_sm(
        skube,
        LAPTOP_NAMESPACE,
        NAME,
        # The first read may come before the operator's first status write: no `status` yet is "not yet".
        lambda sm: (
            (sm.get("status") or {}).get("readyReplicas") == 1
            and condition(sm, "Ready").get("reason") == "ModelServerUnreachable"
        ),
        "the pod Ready and Ready=ModelServerUnreachable",
        timeout=240,
    )
    ready = condition(sm, "Ready")
    assert ready["status"] == "Unknown", ready
    assert f"http://{NAME}.{LAPTOP_NAMESPACE}.svc:8501/v1/models/{NAME}" in ready["message"], ready
    assert "cannot reach the model server" in ready["message"], ready
    assert versions(sm) == []  # nothing is reported that the server did not say
    # The pod is in fact ready and serving: only the operator's view is missing.
    [pod] = pods(skube, LAPTOP_NAMESPACE, NAME)
    assert pod_ready(pod)
    base = f"http://{pod['status']['podIP']}:8501/v1/models/{NAME}"
    assert_close(predict(node, base), keras_models.predict("a", INPUTS), "served while unobserved")
    # The operator does not flip it to True on a later pass either.
    laptop_operator_log = laptop_operator.text()
    assert "Traceback" not in laptop_operator_log
    assert condition(skube.get("servedmodel", NAME, LAPTOP_NAMESPACE), "Ready")["status"] == "Unknown"
