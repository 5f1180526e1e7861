"""Rendering is pure: spec in, objects out. Every models.config is parsed with TF Serving's own protos."""

from __future__ import annotations

import copy

import pytest
from google.protobuf import text_format
from servedmodel_operator.constants import ANNOTATION_RESTART_CHECKSUM, ANNOTATION_SPEC_HASH, DEFAULT_IMAGE
from servedmodel_operator.render import endpoints, render, render_model_config, server_args
from servedmodel_operator.spec import parse
from tensorflow_serving.config import model_server_config_pb2


def body(**spec):
    base = {"storage": {"persistentVolumeClaim": {"claimName": "models"}, "path": "vision/resnet"}}
    base.update(spec)
    return {"metadata": {"name": "resnet", "namespace": "ml", "uid": "u-1", "generation": 1}, "spec": base}


def parse_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


POLICIES = [
    ({}, "latest", lambda p: p.latest.num_versions == 1),
    ({"versionPolicy": {"latest": {"numVersions": 3}}}, "latest", lambda p: p.latest.num_versions == 3),
    (
        {"versionPolicy": {"specific": {"versions": [7, 2]}}},
        "specific",
        lambda p: list(p.specific.versions) == [2, 7],
    ),
    ({"versionPolicy": {"all": {}}}, "all", lambda p: p.HasField("all")),
]


@pytest.mark.parametrize("extra,kind,check", POLICIES)
def test_model_config_parses_with_official_protos(extra, kind, check):
    cfg = parse_config(render_model_config(parse(body(**extra))))
    (model,) = cfg.model_config_list.config
    assert model.name == "resnet"
    assert model.base_path == "/models/vision/resnet"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == kind
    assert check(model.model_version_policy)


def test_labels_and_odd_names_survive_text_format():
    spec = parse(
        body(
            modelName="my.model-2",
            storage={"persistentVolumeClaim": {"claimName": "m"}, "path": 'we"ird\\path'},
            versionPolicy={"specific": {"versions": [1, 2]}},
            versionLabels={"stable": 1, "canary": 2},
        )
    )
    (model,) = parse_config(render_model_config(spec)).model_config_list.config
    assert model.name == "my.model-2"
    assert model.base_path == '/models/we"ird\\path'
    assert dict(model.version_labels) == {"stable": 1, "canary": 2}


def test_root_of_volume_is_the_base_path_when_path_is_empty():
    spec = parse(body(storage={"persistentVolumeClaim": {"claimName": "m"}}))
    (model,) = parse_config(render_model_config(spec)).model_config_list.config
    assert model.base_path == "/models"


def test_deployment_runs_the_server_with_the_flags_that_bite():
    cm, svc, dep = render(parse(body()))
    assert [cm["kind"], svc["kind"], dep["kind"]] == ["ConfigMap", "Service", "Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == DEFAULT_IMAGE and ":" in DEFAULT_IMAGE and not DEFAULT_IMAGE.endswith(":latest")
    assert c["command"] == ["/usr/bin/tensorflow_model_server"]
    assert c["args"] == [
        "--port=8500",
        "--rest_api_port=8501",
        "--model_config_file=/etc/servedmodel/models.config",
        "--model_config_file_poll_wait_seconds=10",
        "--file_system_poll_wait_seconds=2",
    ]
    assert c["readinessProbe"]["httpGet"] == {"path": "/v1/models/resnet/metadata", "port": "rest"}
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 600
    assert c["livenessProbe"]["httpGet"]["path"] == "/v1/models/resnet"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert pod["volumes"][1]["configMap"]["name"] == cm["metadata"]["name"]


def test_pod_security_is_restricted():
    dep = render(parse(body()))[2]
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = pod["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True


def test_labels_selector_and_owner():
    for obj in render(parse(body())):
        meta = obj["metadata"]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "servedmodel-operator"
        assert meta["labels"]["app.kubernetes.io/instance"] == "resnet"
        (ref,) = meta["ownerReferences"]
        assert ref == {
            "apiVersion": "servedmodel.io/v1alpha1",
            "kind": "ServedModel",
            "name": "resnet",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    dep, svc = render(parse(body()))[2], render(parse(body()))[1]
    selector = {"app.kubernetes.io/name": "tensorflow-serving", "app.kubernetes.io/instance": "resnet"}
    # Each Deployment selects its own track; the Service selects every track (a canary shares the traffic).
    assert dep["spec"]["selector"]["matchLabels"] == {**selector, "servedmodel.io/track": "stable"}
    assert svc["spec"]["selector"] == selector
    assert {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {
        "grpc": (8500, "grpc"),
        "rest": (8501, "rest"),
    }


def test_policy_and_label_changes_keep_the_pod_template():
    """TF Serving re-reads models.config: these edits must not roll pods."""
    before = render(parse(body(versionPolicy={"specific": {"versions": [1]}})))
    after = render(parse(body(versionPolicy={"specific": {"versions": [1, 2]}}, versionLabels={"canary": 2})))
    assert before[0]["data"] != after[0]["data"]
    t_before, t_after = before[2]["spec"]["template"], after[2]["spec"]["template"]
    # Labels add one start-up flag (they must be allowed before their version loads); nothing else moves.
    assert t_after["spec"]["containers"][0]["args"][:-1] == t_before["spec"]["containers"][0]["args"]
    assert (
        t_before["metadata"]["annotations"][ANNOTATION_RESTART_CHECKSUM]
        == t_after["metadata"]["annotations"][ANNOTATION_RESTART_CHECKSUM]
    )
    same = render(parse(body(versionPolicy={"specific": {"versions": [1, 2]}})))
    assert same[2]["spec"]["template"] == before[2]["spec"]["template"]


def test_rendering_is_deterministic_and_hash_tracks_content():
    a, b = render(parse(body())), render(parse(body()))
    assert a == b
    changed = render(parse(body(replicas=3)))
    assert (
        changed[2]["metadata"]["annotations"][ANNOTATION_SPEC_HASH]
        != a[2]["metadata"]["annotations"][ANNOTATION_SPEC_HASH]
    )
    assert changed[0] == a[0] and changed[1] == a[1]


def test_optional_pod_fields_pass_through():
    spec = parse(
        body(
            resources={"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"nvidia.com/gpu": 1}},
            env=[{"name": "TF_CPP_MIN_LOG_LEVEL", "value": "1"}],
            nodeSelector={"pool": "gpu"},
            tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            affinity={"nodeAffinity": {}},
            serviceAccountName="reader",
            podLabels={"team": "vision"},
            podAnnotations={"a": "b"},
            service={"type": "LoadBalancer", "annotations": {"lb": "internal"}},
            ports={"grpc": 9000, "rest": 9001},
            server={"extraArgs": ["--enable_batching"]},
        )
    )
    _, svc, dep = render(spec)
    pod = dep["spec"]["template"]
    c = pod["spec"]["containers"][0]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert c["env"] == [{"name": "TF_CPP_MIN_LOG_LEVEL", "value": "1"}]
    assert pod["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert pod["spec"]["tolerations"][0]["key"] == "gpu"
    assert pod["spec"]["serviceAccountName"] == "reader"
    assert pod["metadata"]["labels"]["team"] == "vision"
    assert pod["metadata"]["annotations"]["a"] == "b"
    assert c["args"][-1] == "--enable_batching"
    assert "--port=9000" in c["args"] and "--rest_api_port=9001" in c["args"]
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"]["lb"] == "internal"
    assert endpoints(spec) == {
        "rest": "http://resnet.ml.svc:9001/v1/models/resnet",
        "grpc": "resnet.ml.svc:9000",
    }


def test_labels_allow_unavailable_versions_at_start():
    assert "--allow_version_labels_for_unavailable_models" not in server_args(parse(body()))
    spec = parse(body(versionPolicy={"latest": {"numVersions": 2}}, versionLabels={"stable": 4}))
    assert "--allow_version_labels_for_unavailable_models" in server_args(spec)


def test_render_does_not_mutate_its_input():
    raw = body(env=[{"name": "A", "value": "1"}])
    frozen = copy.deepcopy(raw)
    render(parse(raw))
    assert raw == frozen


def test_canary_track_serves_only_the_candidate_behind_the_same_service():
    spec = parse(
        body(
            replicas=4,
            versionPolicy={"specific": {"versions": [3]}},
            versionLabels={"stable": 3, "canary": 4},
            canary={"version": 4, "replicas": 1},
        )
    )
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(spec)}
    assert set(objects) == {
        ("ConfigMap", "resnet-config"),
        ("Service", "resnet"),
        ("Deployment", "resnet"),
        ("ConfigMap", "resnet-canary-config"),
        ("Deployment", "resnet-canary"),
        ("Service", "resnet-stable"),
        ("Service", "resnet-canary"),
        ("PodDisruptionBudget", "resnet"),
    }
    stable, canary = objects[("Deployment", "resnet")], objects[("Deployment", "resnet-canary")]
    assert stable["spec"]["replicas"] == 4 and canary["spec"]["replicas"] == 1  # 20 % of the traffic
    assert canary["spec"]["selector"]["matchLabels"]["servedmodel.io/track"] == "canary"
    assert canary["spec"]["template"]["metadata"]["labels"]["servedmodel.io/track"] == "canary"
    shared = objects[("Service", "resnet")]["spec"]["selector"]
    assert "servedmodel.io/track" not in shared  # both tracks behind the model's Service
    assert objects[("Service", "resnet-canary")]["spec"]["selector"]["servedmodel.io/track"] == "canary"
    canary_cfg = parse_config(objects[("ConfigMap", "resnet-canary-config")]["data"]["models.config"])
    (model,) = canary_cfg.model_config_list.config
    assert list(model.model_version_policy.specific.versions) == [4]
    assert dict(model.version_labels) == {"canary": 4}
    volumes = {v["name"]: v for v in canary["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "resnet-canary-config"
    stable_cfg = parse_config(objects[("ConfigMap", "resnet-config")]["data"]["models.config"])
    assert list(stable_cfg.model_config_list.config[0].model_version_policy.specific.versions) == [3]
    assert dict(stable_cfg.model_config_list.config[0].version_labels) == {"stable": 3}


def test_no_service_account_token_unless_the_spec_asks_for_one():
    pod = render(parse(body()))[2]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod  # the namespace's default account, still without a token

    pod = render(parse(body(serviceAccountName="reader", automountServiceAccountToken=True)))[2]
    assert pod["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert pod["spec"]["template"]["spec"]["serviceAccountName"] == "reader"


def test_the_crd_default_of_automount_is_the_parsers():
    """One truth for a default: the CRD writes false, and an object from before the field parses the same."""
    from pathlib import Path

    import yaml

    crd_file = Path(__file__).resolve().parents[3] / "crds" / "servedmodel.io_servedmodels.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec_schema["properties"]["automountServiceAccountToken"]["default"] is False
    assert parse(body()).automount_token is False
