"""The export Job in a container: `spec.export` runs the exporter image as a Job on the real node, which
publishes the next version atomically on the claim; the result comes back through the termination message
into `status.export`; the running server loads the new version by itself (same pod, no restart) and its
answers change, with no failed request during the swap. A bad source fails the Job with the exporter's own
message in `ExportFailed`, publishes nothing, and the served version keeps answering."""

from __future__ import annotations

import json
import time

from exportjobs import wait_export
from kubehelpers import condition, eventually
from servinghelpers import (
    INPUTS,
    NAMESPACE,
    TrafficLoop,
    assert_close,
    cluster_ip,
    pods,
    predict,
    restarts,
    servedmodel,
    versions,
    wait_newest_version,
    wait_ready,
)

NAME = "exported"


def test_export_jobs_publish_versions_the_running_server_serves(
    skube, node, stand_in, exporter_image, serving_operator, keras_models, volume, exporter_owned, cleanup
) -> None:
    exporter_owned(NAME)

    def manifest(source: str) -> dict:
        export = {
            "source": {"path": f"sources/{source}"},
            "image": exporter_image,
            "imagePullPolicy": "Never",
            "backoffLimit": 0,
        }
        return servedmodel(NAME, NAMESPACE, stand_in, export=export)

    def export_record(phase: str, job_other_than: str = "") -> dict:
        sm = wait_export(
            skube,
            NAMESPACE,
            NAME,
            lambda record: record.get("phase") == phase and record.get("jobName") != job_other_than,
            f"status.export.phase {phase}",
            timeout=300,
            interval=1,
        )
        return sm["status"]["export"]

    # 1. The first export publishes version 1 from a.keras on the volume; the model server then serves it.
    started = time.monotonic()
    skube.apply(manifest("a.keras"))
    cleanup.append((NAMESPACE, NAME))
    first = export_record("Succeeded")
    assert first["version"] == 1 and first["message"] == "published version 1"
    job = skube.get("job", first["jobName"], NAMESPACE)
    [job_pod] = skube.list("pods", NAMESPACE, f"batch.kubernetes.io/job-name={first['jobName']}")
    assert job_pod["spec"]["nodeName"] == node.name
    assert job_pod["spec"]["containers"][0]["image"] == exporter_image
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
    # The kubelet copied the exporter's result file into the termination message.
    terminated = job_pod["status"]["containerStatuses"][0]["state"]["terminated"]
    result = json.loads(terminated["message"])
    assert result["ok"] is True and result["version"] == 1, result
    sm = wait_ready(skube, NAMESPACE, NAME)
    assert condition(sm, "Exported")["status"] == "True"
    assert versions(sm) == [{"version": 1, "state": "AVAILABLE"}]
    created_to_served = time.monotonic() - started
    print(f"\n[figure] ServedModel with spec.export created -> version 1 served: {created_to_served:.1f}s")
    base = f"http://{cluster_ip(skube, NAMESPACE, NAME)}:8501/v1/models/{NAME}"
    assert_close(predict(node, base), keras_models.predict("a", INPUTS), "version 1 (model a)")
    [server] = pods(skube, NAMESPACE, NAME)

    # 2. A new source: the next Job publishes version 2; the running server swaps to it under traffic.
    with TrafficLoop(node, f"{base}:predict") as loop:
        edited = time.monotonic()
        skube.apply(manifest("b.keras"))
        second = export_record("Succeeded", job_other_than=first["jobName"])
        job_done = time.monotonic() - edited
        assert second["version"] == 2
        b = keras_models.predict("b", INPUTS)
        eventually(
            lambda: assert_close(predict(node, base), b, "version 2 (model b)") or True,
            timeout=120,
            what="the server to answer with version 2",
        )
        served = time.monotonic() - edited
        loop.wait_distinct_answers(2)
        counts = loop.stop()
    print(
        f"\n[figure] export edit -> Job succeeded {job_done:.1f}s -> version 2 served {served:.1f}s; "
        f"requests during the swap: {counts['ok']} ok, {counts['failed']} failed"
    )
    assert counts["failed"] == 0, counts["errors"]
    assert len(counts["answers"]) == 2, counts  # both models answered: the swap happened under traffic
    wait_newest_version(skube, NAMESPACE, NAME, 2)
    assert volume.version_folders(NAME) == ["1", "2"]
    [same] = pods(skube, NAMESPACE, NAME)
    assert same["metadata"]["uid"] == server["metadata"]["uid"] and restarts(same) == 0

    # 3. A bad source: the Job fails with the exporter's message, nothing is published, version 2 serves on.
    before = volume.entries(NAME)
    skube.apply(manifest("broken.keras"))
    failed = export_record("Failed")
    [bad_pod] = skube.list("pods", NAMESPACE, f"batch.kubernetes.io/job-name={failed['jobName']}")
    exporter_said = json.loads(bad_pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
    assert exporter_said["ok"] is False and exporter_said["error"], exporter_said
    assert failed["message"] == exporter_said["error"]
    sm = skube.wait_condition("servedmodel", NAME, NAMESPACE, "Exported", reason="ExportFailed", interval=1)
    exported = condition(sm, "Exported")
    assert exported["status"] == "False" and exported["message"] == exporter_said["error"]
    assert "broken.keras" in exported["message"], exported
    assert volume.entries(NAME) == before  # nothing published, nothing left behind
    assert_close(predict(node, base), b, "version 2 still answers")
    assert condition(sm, "Ready")["status"] == "True"
