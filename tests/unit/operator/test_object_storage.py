"""spec.storage.s3 rendered: the sync sidecar, its emptyDir and Service, export Jobs into the bucket, and
the conditions the sidecar's report becomes. Concrete facts, checked by eye against the README."""

from __future__ import annotations

import pytest
from servedmodel_operator import status as st
from servedmodel_operator.object_storage import parse_sync_state, sync_problem
from servedmodel_operator.policy import Policy
from servedmodel_operator.render import render
from servedmodel_operator.render_export import render_export_job
from servedmodel_operator.spec import InvalidSpec, parse


def sm(s3: dict | None = None, **spec) -> dict:
    storage = {"s3": s3 if s3 is not None else {"bucket": "models", "credentials": {"secretName": "s3"}}}
    return {
        "metadata": {"name": "iris", "namespace": "ns", "uid": "u1"},
        "spec": {"storage": storage, **spec},
    }


def children(body: dict) -> dict:
    return {(o["kind"], o["metadata"]["name"]): o for o in render(parse(body))}


def pod(body: dict) -> dict:
    return children(body)[("Deployment", "iris")]["spec"]["template"]["spec"]


def test_the_pod_gets_the_sync_sidecar_the_emptydir_and_the_same_model_path():
    spec = pod(
        sm(
            {
                "bucket": "models",
                "prefix": "team",
                "endpoint": "http://10.200.1.1:8333",
                "credentials": {
                    "secretName": "s3-key",
                    "accessKeyIdKey": "id",
                    "secretAccessKeyKey": "secret",
                },
                "sizeLimit": "2Gi",
                "syncIntervalSeconds": 3,
                "syncImage": "registry.example/servedmodel-exporter:9",
            },
            versionPolicy={"latest": {"numVersions": 2}},
        )
    )
    assert {"name": "models", "emptyDir": {"sizeLimit": "2Gi"}} in spec["volumes"]
    assert not any("persistentVolumeClaim" in v for v in spec["volumes"])
    (server,) = spec["containers"]
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in server["volumeMounts"]
    (sidecar,) = spec["initContainers"]
    assert sidecar["name"] == "servedmodel-sync" and sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == "registry.example/servedmodel-exporter:9"
    assert sidecar["command"] == ["servedmodel-sync"]
    assert sidecar["args"] == [
        "--bucket=models",
        "--prefix=team",
        "--model=iris",
        "--dest=/models/iris",
        "--model-config=/etc/servedmodel/models.config",
        "--server=http://127.0.0.1:8501/v1/models/iris",
        "--size-limit=2Gi",
        "--interval=3",
        "--port=8502",
    ]
    assert {"name": "models", "mountPath": "/models"} in sidecar["volumeMounts"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in sidecar["env"]}
    assert env["AWS_ENDPOINT_URL"] == "http://10.200.1.1:8333"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "s3-key", "key": "id"}}
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3-key", "key": "secret"}}
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8502}
    # TF Serving is told the folder the sidecar fills
    config = children(sm())[("ConfigMap", "iris-config")]["data"]["models.config"]
    assert 'base_path: "/models/iris"' in config


def test_the_pod_stays_within_the_restricted_pod_security_profile():
    spec = pod(sm())
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"] + spec["initContainers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    assert not any("hostPath" in v for v in spec["volumes"])


def test_the_defaults_and_the_model_folder_from_storage_path():
    spec = parse(sm({"bucket": "models", "prefix": "a/b/"}))
    assert spec.s3 is not None
    assert (spec.s3.prefix, spec.s3.model, spec.s3.size_limit, spec.s3.sync_interval_seconds) == (
        "a/b",
        "iris",
        "10Gi",
        10,
    )
    body = sm({"bucket": "models", "prefix": "p"})
    body["spec"]["storage"]["path"] = "team/resnet"
    spec = parse(body)
    assert (spec.s3.prefix, spec.s3.model, spec.base_path) == ("p/team", "resnet", "/models/resnet")
    assert spec.s3.url == "s3://models/p/team"
    sidecar = pod(sm({"bucket": "models"}))["initContainers"][0]
    assert sidecar["image"] == "ghcr.io/servedmodel/servedmodel-exporter:0.1.0"  # the exporter image
    names = [e["name"] for e in sidecar["env"]]
    assert "AWS_ACCESS_KEY_ID" not in names and "AWS_ENDPOINT_URL" not in names  # the SDK's own chain


def test_a_service_reaches_the_sidecars_of_pods_that_are_not_ready():
    service = children(sm())[("Service", "iris-sync")]
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"] == [
        {"name": "sync", "port": 8502, "targetPort": 8502, "protocol": "TCP", "appProtocol": "http"}
    ]
    assert ("Service", "iris-sync") not in children(
        {**sm(), "spec": {"storage": {"persistentVolumeClaim": {"claimName": "m"}}}}
    )


@pytest.mark.parametrize(
    "body,message",
    [
        (sm({"bucket": "No_Such"}), "is not a bucket name"),
        (sm({"bucket": "models", "prefix": "/abs"}), "must not start with '/'"),
        (sm({"bucket": "models", "endpoint": "ftp://x"}), "must be an http(s) URL"),
        (sm({"bucket": "models", "sizeLimit": "lots"}), "must be a quantity"),
        (sm({"bucket": "models", "credentials": {}}), "credentials.secretName is required"),
        (sm(ports={"rest": 8502}), "port 8502 is the sync sidecar's"),
        (sm(export={"source": {"path": "in/m.keras"}}), "use export.source.url"),
    ],
)
def test_bad_s3_specs_say_what_to_change(body, message):
    with pytest.raises(InvalidSpec, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(body)


def test_an_export_job_publishes_into_the_bucket_with_the_access_key():
    job = render_export_job(parse(sm(export={"source": {"url": "https://models.example/m.keras"}})))
    pod_spec = job["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    args = container["args"]
    assert args[:6] == ["publish", "https://models.example/m.keras", "--to", "s3://models", "--model", "iris"]
    assert "--base-path" not in args
    env = {e["name"]: e.get("valueFrom") for e in container["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "s3", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    assert [v["name"] for v in pod_spec["volumes"]] == ["tmp"]


def test_the_policy_checks_the_sync_image():
    policy = Policy(image_prefixes=("tensorflow/",))
    body = sm({"bucket": "models", "syncImage": "evil.example/sync:1"}, image="tensorflow/serving:2.21.0")
    (problem,) = policy.violations(parse(body))
    assert problem.startswith("spec.storage.s3.syncImage 'evil.example/sync:1' is not allowed")


REPORT = {
    "firstSyncDone": False,
    "versions": [],
    "error": {
        "code": "AccessDenied",
        "message": "Access Denied (listing s3://models/iris/)",
    },
    "tooBig": [],
    "limitBytes": 10 * 2**30,
    "freeBytes": 10 * 2**30,
}


def test_a_store_error_makes_the_model_not_ready_with_the_stores_message():
    problem = sync_problem(parse_sync_state(REPORT))
    assert problem is not None
    reason, message = problem
    assert reason == "ObjectStorageAccessDenied"
    assert "AccessDenied: Access Denied (listing s3://models/iris/)" in message
    assert "storage.s3.credentials" in message
    conditions = st.rollout_conditions(
        {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "replicas": 1}}, 1
    )
    out = {c.type: c for c in st.with_sync_state(conditions, False, problem)}
    assert (out["Ready"].status, out["Ready"].reason) == (False, "ObjectStorageAccessDenied")
    assert (out["Degraded"].status, out["Degraded"].reason) == (True, "ObjectStorageAccessDenied")


def test_other_reports_become_their_own_reasons():
    missing = {**REPORT, "error": {"code": "NoSuchBucket", "message": "The specified bucket does not exist"}}
    assert sync_problem(parse_sync_state(missing))[0] == "ObjectStorageBucketNotFound"
    big = {**REPORT, "error": None, "firstSyncDone": True, "tooBig": [{"version": 3, "bytes": 3 * 2**30}]}
    reason, message = sync_problem(parse_sync_state(big))
    assert reason == "VersionTooLarge" and "version 3 needs 3.00 GiB" in message and "10.00 GiB" in message
    fine = parse_sync_state({**REPORT, "error": None, "firstSyncDone": True, "versions": ["2", "1"]})
    assert sync_problem(fine) is None and fine.versions == (1, 2)


def test_a_serving_model_stays_ready_when_a_later_sync_fails():
    ready = [
        st.Condition("Ready", True, "ModelServing", ""),
        st.Condition("Progressing", False, "RolloutComplete", ""),
        st.Condition("Degraded", False, "AsExpected", ""),
    ]
    out = {c.type: c for c in st.with_sync_state(ready, True, ("ObjectStorageAccessDenied", "denied"))}
    assert out["Ready"].status is True
    assert (out["Degraded"].status, out["Degraded"].reason) == (True, "ObjectStorageAccessDenied")
    waiting = [st.Condition("Ready", False, "ReplicasNotReady", ""), *ready[1:]]
    out = {c.type: c for c in st.with_sync_state(waiting, False, None)}
    assert out["Ready"].reason == "AwaitingFirstSync"


def test_a_sidecar_the_kubelet_cannot_start_is_named_with_the_kubelets_message():
    from servedmodel_operator.object_storage import sidecar_start_failure

    def pod(name: str, waiting: dict, deleting: bool = False) -> dict:
        meta = {"name": name, **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
        sidecar = {"name": "servedmodel-sync", "state": {"waiting": waiting}}
        return {"metadata": meta, "status": {"initContainerStatuses": [sidecar]}}

    missing = {"reason": "CreateContainerConfigError", "message": 'secret "models-s3" not found'}
    reason, message = sidecar_start_failure([pod("iris-1", missing)])
    assert reason == "ObjectStorageCredentialsMissing"
    assert 'pod iris-1 cannot start its sync sidecar: secret "models-s3" not found' in message
    assert "storage.s3.credentials.secretName" in message
    pull = {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}
    assert sidecar_start_failure([pod("iris-2", pull)])[0] == "SyncImagePullFailed"
    assert sidecar_start_failure([pod("iris-3", missing, deleting=True)]) is None
    assert sidecar_start_failure([pod("iris-4", {"reason": "PodInitializing"})]) is None
