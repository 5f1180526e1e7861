"""Readiness is real: the kubelet runs the model server's probes against the stand-in, which answers 404
until a version is loaded; the operator reports it (Ready=False, NoServableVersion, with what to publish
where); publishing a version with the exporter makes the pods Ready and the ServedModel Ready with the
version AVAILABLE."""

from __future__ import annotations

import time

from kubehelpers import condition, eventually
from servinghelpers import NAMESPACE, get_sm, pod_ready, pods, servedmodel, versions, wait_ready


def test_no_version_means_unready_pods_and_publishing_one_makes_them_ready(
    skube, node, stand_in, serving_operator, keras_models, volume, cleanup
):

    name = "ready"
    volume.folder(name)  # the model folder exists, with no version in it
    skube.apply(servedmodel(name, NAMESPACE, stand_in))
    cleanup.append((NAMESPACE, name))

    # The kubelet probes the server and keeps the pod out of Ready: like TF Serving, the stand-in opens its
    # ports only once the model's first version is loaded, and says in its log that it found none.
    def probe_failed() -> bool:
        return any(
            e["reason"] == "Unhealthy"
            and e["message"].startswith("Startup probe failed:")
            and f"/v1/models/{name}/metadata" in e["message"]
            for e in skube.list("events", NAMESPACE)
            if e["involvedObject"]["kind"] == "Pod" and e["involvedObject"]["name"].startswith(f"{name}-")
        )

    eventually(probe_failed, timeout=180, interval=1, what="the kubelet's failed probe on the model server")
    [pod] = pods(skube, NAMESPACE, name)
    assert pod["spec"]["nodeName"] == node.name
    assert pod["status"]["phase"] == "Running" and not pod_ready(pod)
    [container] = pod["status"]["containerStatuses"]
    assert container["started"] is False and container["restartCount"] == 0
    log = skube.kubectl("logs", "-n", NAMESPACE, pod["metadata"]["name"]).stdout
    assert f"No versions of servable {name} found under base path /models/{name}" in log

    # The operator reads the pod (running, its startup probe not passed) and says why: no version to serve.
    def not_ready_for_this_reason() -> dict:
        sm = get_sm(skube, NAMESPACE, name)
        ready = condition(sm, "Ready")
        return sm if ready.get("reason") == "NoServableVersion" else None

    sm = eventually(not_ready_for_this_reason, timeout=60, what="Ready=False NoServableVersion")
    ready = condition(sm, "Ready")
    assert ready["status"] == "False"
    assert ready["message"].startswith("0/1 model server replicas have a servable version: "), ready
    assert f"no version of model {name!r} under {name} on claim 'models'" in ready["message"], ready
    assert "servedmodel-export publish MODEL.keras" in ready["message"], ready
    assert versions(sm) == []

    # Publish version 1 with the exporter (as a user would, from a machine that mounts the volume).
    published = time.monotonic()
    assert volume.publish(keras_models.files["a"], name) == volume.root / name / "1"
    assert volume.version_folders(name) == ["1"]

    sm = wait_ready(skube, NAMESPACE, name, timeout=120)
    elapsed = time.monotonic() - published
    assert condition(sm, "Ready")["reason"] == "ModelServing"
    assert versions(sm) == [{"version": 1, "state": "AVAILABLE"}]
    [pod] = pods(skube, NAMESPACE, name)
    assert pod_ready(pod)
    assert sm["status"]["readyReplicas"] == 1
    print(f"\n[figure] version published -> pods Ready and ServedModel Ready: {elapsed:.1f}s")
