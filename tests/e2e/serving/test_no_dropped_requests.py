"""No dropped requests: a bounded client loop through the model's Service sees zero failed requests
during a rolling change of the pods (resources) and during a version swap (a new version published, the
latest-1 policy moving to it). The counts are printed."""

from __future__ import annotations

import time

from kubehelpers import condition, eventually
from servinghelpers import (
    INPUTS,
    NAMESPACE,
    TrafficLoop,
    cluster_ip,
    pod_ready,
    predict,
    rest,
    servedmodel,
    wait_newest_version,
    wait_ready,
)

NAME = "steady"


def test_zero_failed_requests_during_a_rollout_and_a_version_swap(
    skube, node, stand_in, serving_operator, keras_models, volume, cleanup
) -> None:
    import numpy as np

    volume.publish_copy(NAME, "a", 1)
    spec = {"replicas": 2, "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}}}
    skube.apply(servedmodel(NAME, NAMESPACE, stand_in, **spec))
    cleanup.append((NAMESPACE, NAME))
    wait_ready(skube, NAMESPACE, NAME)
    base = f"http://{cluster_ip(skube, NAMESPACE, NAME)}:8501/v1/models/{NAME}"
    selector = f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=model-server"

    def all_pods() -> list[dict]:  # terminating ones included
        return skube.list("pods", NAMESPACE, selector)

    old = {p["metadata"]["name"] for p in all_pods()}
    assert len(old) == 2

    # 1. A rolling change: new resources roll the pods one at a time (maxUnavailable 0, maxSurge 1).
    spec["resources"] = {"requests": {"cpu": "60m", "memory": "256Mi"}}
    with TrafficLoop(node, f"{base}:predict") as loop:
        started = time.monotonic()
        skube.apply(servedmodel(NAME, NAMESPACE, stand_in, **spec))

        def rolled() -> bool:
            current = all_pods()
            names = {p["metadata"]["name"] for p in current}
            return not names & old and len(current) == 2 and all(pod_ready(p) for p in current)

        eventually(rolled, timeout=300, interval=1, what="both pods replaced and the old ones gone")
        rollout_seconds = time.monotonic() - started
        rollout = loop.stop()
    sm = wait_ready(skube, NAMESPACE, NAME)
    assert condition(sm, "Progressing")["reason"] == "RolloutComplete"
    print(
        f"\n[figure] rolling change (2 replicas, {rollout_seconds:.0f}s until the old pods were gone): "
        f"{rollout['ok']} requests ok, {rollout['failed']} failed"
    )
    assert rollout["failed"] == 0, rollout["errors"]
    assert rollout["ok"] > 0 and len(rollout["answers"]) == 1

    # 2. A version swap: version 2 (model b) is published; the latest-1 policy loads it, then unloads 1.
    pod_ips = [p["status"]["podIP"] for p in all_pods()]
    b = keras_models.predict("b", INPUTS)
    with TrafficLoop(node, f"{base}:predict") as loop:
        started = time.monotonic()
        volume.publish_copy(NAME, "b", 2)

        def swapped_everywhere() -> bool:
            for ip in pod_ips:
                status, answer = rest(node, f"http://{ip}:8501/v1/models/{NAME}")
                states = {int(v["version"]): v["state"] for v in answer["model_version_status"]}
                if status != 200 or states.get(2) != "AVAILABLE" or states.get(1) != "END":
                    return False
            return True

        eventually(swapped_everywhere, timeout=120, interval=0.5, what="both pods serving only version 2")
        swap_seconds = time.monotonic() - started
        # Through the Service, version 2 answers now; the loop keeps running meanwhile and meets it too.
        assert np.allclose(predict(node, base), b, atol=1e-5)
        loop.wait_distinct_answers(2)
        swap = loop.stop()
    print(
        f"\n[figure] version swap ({swap_seconds:.1f}s until both pods had unloaded version 1): "
        f"{swap['ok']} requests ok, {swap['failed']} failed"
    )
    assert swap["failed"] == 0, swap["errors"]
    assert len(swap["answers"]) == 2, swap  # the loop saw both versions answer
    wait_newest_version(skube, NAMESPACE, NAME, 2)
