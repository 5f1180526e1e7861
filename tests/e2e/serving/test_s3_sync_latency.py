"""The figure of issue 13: time from a version's upload to S3 completing (the exporter has written its
commit marker and returned) to TF Serving (the stand-in) reporting it AVAILABLE, p50 of 10 publishes
into one ServedModel. Printed, not asserted (speed is measured, never a timed assert)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from servinghelpers import NAMESPACE, NETCLIENT, cluster_ip, fresh_keras_source, pods, versions, wait_ready


def all_restarts(pod: dict) -> int:
    """Restarts of every container of the pod, the sync sidecar (an init container) included."""
    status = pod.get("status") or {}
    containers = (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
    return sum(c.get("restartCount", 0) for c in containers)


NAME = "s3-latency"
ROUNDS = 10


def test_upload_to_available_p50_of_10(
    skube, node, stand_in, exporter_image, serving_operator, keras_models, s3, cleanup, tmp_path
) -> None:
    s3.publish(keras_models.files["a"], NAME)
    skube.apply(s3.servedmodel(NAME, stand_in, exporter_image))
    cleanup.append((NAMESPACE, NAME))
    sm = wait_ready(skube, NAMESPACE, NAME, timeout=300)
    first = versions(sm)[0]["version"]
    [pod] = pods(skube, NAMESPACE, NAME)
    status_url = f"http://{cluster_ip(skube, NAMESPACE, NAME)}:8501/v1/models/{NAME}"
    seconds = []
    for round_ in range(ROUNDS):
        expected = first + round_ + 1
        # The watcher runs in the node's network namespace, asking every 50 ms, started before the upload.
        watcher = subprocess.Popen(
            node.netns_argv([sys.executable, str(NETCLIENT), "available", status_url, str(expected)]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        source, _ = fresh_keras_source(tmp_path, 0.1 * (round_ + 1))  # a new source: a new version
        version = s3.publish_here(source, NAME)
        uploaded = time.time()  # the publish returned: its commit marker is in the bucket
        assert version == expected, (version, expected)
        out, err = watcher.communicate(timeout=180)
        assert watcher.returncode == 0, err
        seen = json.loads(out)["available_at"]
        assert seen is not None, f"version {version} never became AVAILABLE"
        seconds.append(seen - uploaded)
    [same] = pods(skube, NAMESPACE, NAME)
    assert same["metadata"]["uid"] == pod["metadata"]["uid"] and all_restarts(same) == 0
    p50 = statistics.median(seconds)
    print(
        f"\n[figure] S3 upload complete -> TF Serving (stand-in) AVAILABLE, {ROUNDS} versions: "
        f"p50 {p50:.2f}s, min {min(seconds):.2f}s, max {max(seconds):.2f}s "
        f"(syncIntervalSeconds 1, fileSystemPollSeconds 1); each: {', '.join(f'{s:.2f}' for s in seconds)}"
    )
