"""Models in S3 on the real node: a real SeaweedFS S3 gateway on the node's host-side address, the
exporter publishing into it, and model server pods whose servedmodel-sync sidecar mirrors the bucket.

Version 1 published -> served, answers equal Keras'; version 2 published -> served by the same pod,
never restarted; a version whose upload was killed before its commit marker -> never on the pod's disk,
never reported by the server, while the sidecar keeps syncing; wrong credentials -> Ready=False with
ObjectStorageAccessDenied and the store's own message.
"""

from __future__ import annotations

import signal

import numpy as np
from kubehelpers import condition, eventually
from servinghelpers import (
    INPUTS,
    NAMESPACE,
    assert_close,
    cluster_ip,
    fresh_keras_source,
    get_sm,
    pods,
    predict,
    rest,
    versions,
    wait_newest_version,
    wait_ready,
)


def all_restarts(pod: dict) -> int:
    """Restarts of every container of the pod, the sync sidecar (an init container) included."""
    status = pod.get("status") or {}
    containers = (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
    return sum(c.get("restartCount", 0) for c in containers)


NAME = "s3-served"
DENIED = "s3-denied"


def _sync_state(node, skube, name: str) -> dict:
    status, answer = rest(node, f"http://{cluster_ip(skube, NAMESPACE, f'{name}-sync')}:8502/v1/sync")
    assert status == 200, answer
    return answer


def test_versions_published_to_s3_are_served_live(
    skube, node, stand_in, exporter_image, serving_operator, keras_models, s3, cleanup, tmp_path
) -> None:
    s3.publish(keras_models.files["a"], NAME)  # version 1
    skube.apply(s3.servedmodel(NAME, stand_in, exporter_image))
    cleanup.append((NAMESPACE, NAME))
    sm = wait_ready(skube, NAMESPACE, NAME, timeout=300)
    assert versions(sm) == [{"version": 1, "state": "AVAILABLE"}]
    base = f"http://{cluster_ip(skube, NAMESPACE, NAME)}:8501/v1/models/{NAME}"
    assert_close(predict(node, base), keras_models.predict("a", INPUTS), "version 1 (model a) from S3")
    [pod] = pods(skube, NAMESPACE, NAME)
    sidecar = pod["spec"]["initContainers"][0]
    assert sidecar["name"] == "servedmodel-sync" and sidecar["image"] == exporter_image
    emptydir = {v["name"]: v for v in pod["spec"]["volumes"]}["models"]["emptyDir"]
    assert emptydir == {"sizeLimit": "1Gi"}

    # 2. Version 2: served by the same pod, no restart; version 1 unloaded, then deleted from the pod.
    s3.publish(keras_models.files["b"], NAME)
    wait_newest_version(skube, NAMESPACE, NAME, 2, timeout=120)
    assert_close(predict(node, base), keras_models.predict("b", INPUTS), "version 2 (model b) from S3")
    eventually(
        lambda: _sync_state(node, skube, NAME)["versions"] == [2],
        timeout=60,
        what="version 1 deleted from the pod once TF Serving unloaded it",
    )
    [same] = pods(skube, NAMESPACE, NAME)
    assert same["metadata"]["uid"] == pod["metadata"]["uid"] and all_restarts(same) == 0

    # 3. A publisher killed mid-upload: its objects are in the bucket, its commit marker is not.
    killed_source, _ = fresh_keras_source(tmp_path, 0.5)
    proc = s3.publish_paused(killed_source, NAME)
    try:
        half = eventually(lambda: s3.uncommitted(NAME), timeout=120, what="objects of an uncommitted version")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    (partial,) = half
    # Not a sleep: wait for three more passes of the sidecar after the kill, each of which listed the
    # bucket with the partial version in it.
    seen = _sync_state(node, skube, NAME)["lastSync"]
    for _ in range(3):
        seen = eventually(
            lambda prev=seen: (t := _sync_state(node, skube, NAME)["lastSync"]) > prev and t,
            timeout=60,
            what="another sync pass",
        )
    state = _sync_state(node, skube, NAME)
    assert state["versions"] == [2] and state["error"] is None, state
    status, answer = rest(node, base)
    assert status == 200 and {v["version"] for v in answer["model_version_status"]} <= {"1", "2"}, answer
    assert str(partial) not in {v["version"] for v in answer["model_version_status"]}

    # The next publish takes the next number and is served; the killed one never is.
    next_source, next_model = fresh_keras_source(tmp_path, 1.0)
    published = s3.publish(next_source, NAME)
    assert published > partial
    wait_newest_version(skube, NAMESPACE, NAME, published, timeout=120)
    want = np.asarray(next_model(np.asarray(INPUTS, dtype=np.float32)), dtype=np.float64)
    assert_close(predict(node, base), want, f"version {published} (model a, biases + 1)")
    [same] = pods(skube, NAMESPACE, NAME)
    assert same["metadata"]["uid"] == pod["metadata"]["uid"] and all_restarts(same) == 0


def test_wrong_credentials_give_a_clear_condition(
    skube, node, stand_in, exporter_image, serving_operator, keras_models, s3, cleanup
) -> None:
    s3.publish(keras_models.files["a"], DENIED)
    skube.apply(s3.secret("s3-wrong", s3.access_key, "not-the-secret"))
    skube.apply(s3.servedmodel(DENIED, stand_in, exporter_image, secret="s3-wrong"))
    cleanup.append((NAMESPACE, DENIED))
    sm = skube.wait_condition(
        "servedmodel", DENIED, NAMESPACE, "Ready", reason="ObjectStorageAccessDenied", timeout=180, interval=1
    )
    ready, degraded = condition(sm, "Ready"), condition(sm, "Degraded")
    assert ready["status"] == "False" and degraded["status"] == "True"
    # The store's own error code and the fix, in words.
    assert "SignatureDoesNotMatch" in ready["message"] or "AccessDenied" in ready["message"], ready
    assert "storage.s3.credentials" in ready["message"]
    print(f"\n[condition] {ready['reason']}: {ready['message']}")
    [pod] = pods(skube, NAMESPACE, DENIED)
    assert condition(pod, "Ready").get("status") != "True"  # readiness waits for a first sync
    assert get_sm(skube, NAMESPACE, DENIED)["status"].get("readyReplicas", 0) == 0
