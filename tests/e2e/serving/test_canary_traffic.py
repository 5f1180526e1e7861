"""Canary traffic is real: with a canary, kube-proxy spreads requests to the model's Service over both
tracks (each answers with its own version), and the `-canary` and `-stable` Services reach one track each."""

from __future__ import annotations

import json

from servinghelpers import (
    INPUTS,
    INSTANCES,
    NAMESPACE,
    cluster_ip,
    in_netns,
    pods,
    servedmodel,
    wait_ready,
    wait_sm,
)

NAME = "canary"


def answers(node, url: str, requests: int) -> dict:
    """`requests` predictions through `url` (a bounded loop); counts by answer."""
    out = in_netns(
        node, "loop", url, INSTANCES, "--stop-file", "/nonexistent", "--max-requests", str(requests)
    )
    assert out["failed"] == 0, out["errors"]
    assert out["ok"] == requests
    return out["answers"]


def key(predictions) -> str:
    """The loop's key for an answer (rounded as netclient.py rounds)."""
    return json.dumps([[round(float(x), 4) for x in row] for row in predictions])


def test_both_tracks_answer_through_the_shared_service_and_each_track_service_reaches_one(
    skube, node, stand_in, serving_operator, keras_models, volume, cleanup
) -> None:
    volume.publish_copy(NAME, "a", 1)
    volume.publish_copy(NAME, "b", 2)
    skube.apply(
        servedmodel(
            NAME,
            NAMESPACE,
            stand_in,
            versionPolicy={"specific": {"versions": [1]}},
            canary={"version": 2, "replicas": 1},
        )
    )
    cleanup.append((NAMESPACE, NAME))
    wait_ready(skube, NAMESPACE, NAME)
    sm = wait_sm(
        skube,
        NAMESPACE,
        NAME,
        lambda sm: (
            (sm["status"].get("canary") or {}).get("readyReplicas") == 1
            and {"version": 2, "state": "AVAILABLE"} in sm["status"]["canary"].get("versions", [])
        ),
        "the canary pod ready with version 2 AVAILABLE",
        timeout=240,
    )
    assert sm["status"]["canary"]["service"] == f"{NAME}-canary"
    stable_pods = {p["metadata"]["name"] for p in pods(skube, NAMESPACE, NAME, "stable")}
    canary_pods = {p["metadata"]["name"] for p in pods(skube, NAMESPACE, NAME, "canary")}
    assert len(stable_pods) == 1 and len(canary_pods) == 1
    a, b = key(keras_models.predict("a", INPUTS)), key(keras_models.predict("b", INPUTS))

    def url(service: str) -> str:
        return f"http://{cluster_ip(skube, NAMESPACE, service)}:8501/v1/models/{NAME}:predict"

    # The shared Service: both tracks answer (60 requests: with one pod each, missing one has odds 2^-59).
    shared = answers(node, url(NAME), 60)
    assert set(shared) == {a, b}, shared
    print(
        f"\n[figure] canary, shared Service: {shared[a]} answers from version 1, {shared[b]} from version 2"
    )
    # Each track's Service: one version only; its endpoints are that track's pods.
    assert answers(node, url(f"{NAME}-canary"), 20) == {b: 20}
    assert answers(node, url(f"{NAME}-stable"), 20) == {a: 20}
    for service, expected in ((f"{NAME}-canary", canary_pods), (f"{NAME}-stable", stable_pods), (NAME, None)):
        slices = skube.list("endpointslices", NAMESPACE, f"kubernetes.io/service-name={service}")
        targets = {ep["targetRef"]["name"] for s in slices for ep in s.get("endpoints") or []}
        assert targets == (expected if expected is not None else stable_pods | canary_pods), (
            service,
            targets,
        )
