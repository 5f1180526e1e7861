"""Hot reload through the kubelet: an edit of versionPolicy or versionLabels changes only the models.config
ConfigMap; the kubelet updates the mounted file, the server re-reads it and applies it, with the same pods
and no restart; the status follows. The time from the edit to the server reporting it is printed."""

from __future__ import annotations

import time

from kubehelpers import condition, eventually
from servinghelpers import (
    INPUTS,
    NAMESPACE,
    assert_close,
    cluster_ip,
    current,
    pods,
    predict,
    rest,
    restarts,
    servedmodel,
    versions,
    wait_ready,
    wait_sm,
)

NAME = "reload"


def test_policy_and_label_edits_reach_the_server_without_a_restart(
    skube, node, stand_in, serving_operator, keras_models, volume, cleanup
) -> None:
    volume.publish_copy(NAME, "a", 1)
    volume.publish_copy(NAME, "b", 2)
    spec = {"versionPolicy": {"specific": {"versions": [1]}}, "versionLabels": {"stable": 1}}
    skube.apply(servedmodel(NAME, NAMESPACE, stand_in, **spec))
    cleanup.append((NAMESPACE, NAME))
    sm = wait_ready(skube, NAMESPACE, NAME)
    assert versions(sm) == [{"version": 1, "state": "AVAILABLE"}]
    [before] = pods(skube, NAMESPACE, NAME)
    template = skube.get("deployment", NAME, NAMESPACE)["spec"]["template"]
    base = f"http://{cluster_ip(skube, NAMESPACE, NAME)}:8501/v1/models/{NAME}"
    assert_close(predict(node, base, "/labels/stable"), keras_models.predict("a", INPUTS), "stable is 1")

    def server_states() -> dict[int, str]:
        status, answer = rest(node, base)
        assert status == 200, answer
        return {int(v["version"]): v["state"] for v in answer["model_version_status"]}

    # 1. The policy: serve version 2 beside 1.
    spec["versionPolicy"] = {"specific": {"versions": [1, 2]}}
    edited = time.monotonic()
    skube.apply(servedmodel(NAME, NAMESPACE, stand_in, **spec))
    eventually(
        lambda: server_states() == {1: "AVAILABLE", 2: "AVAILABLE"},
        timeout=120,
        what="the server to load version 2 after the policy edit",
    )
    policy_seconds = time.monotonic() - edited
    wait_sm(
        skube,
        NAMESPACE,
        NAME,
        lambda sm: (
            current(sm)
            and versions(sm) == [{"version": 2, "state": "AVAILABLE"}, {"version": 1, "state": "AVAILABLE"}]
            and condition(sm, "Ready")["status"] == "True"
        ),
        "status.versions to show both versions",
    )

    # 2. The label: stable moves to version 2 (available now, so the operator does not hold it back).
    spec["versionLabels"] = {"stable": 2}
    edited = time.monotonic()
    skube.apply(servedmodel(NAME, NAMESPACE, stand_in, **spec))

    def stable_is_2() -> bool:
        status, answer = rest(node, f"{base}/labels/stable/metadata")
        return status == 200 and answer["model_spec"]["version"] == "2"

    eventually(stable_is_2, timeout=120, what="the server to move label stable to version 2")
    label_seconds = time.monotonic() - edited
    assert_close(predict(node, base, "/labels/stable"), keras_models.predict("b", INPUTS), "stable is 2")
    sm = wait_sm(
        skube,
        NAMESPACE,
        NAME,
        lambda sm: current(sm) and condition(sm, "Progressing").get("reason") == "RolloutComplete",
        "the ServedModel settled on the new generation",
    )
    assert condition(sm, "Ready")["status"] == "True"

    # The same pod served throughout, never restarted; the pod template never changed.
    [after] = pods(skube, NAMESPACE, NAME)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert restarts(after) == 0
    assert skube.get("deployment", NAME, NAMESPACE)["spec"]["template"] == template
    configmap = skube.get("configmap", f"{NAME}-config", NAMESPACE)["data"]["models.config"]
    assert "specific" in configmap and "stable" in configmap
    print(
        f"\n[figure] hot reload, edit -> server reports it: versionPolicy {policy_seconds:.1f}s, "
        f"versionLabels {label_seconds:.1f}s (kubelet syncFrequency 10s, modelConfigPollSeconds 2)"
    )
