"""storage.image: parsing, the pod each mount renders, the mount choice, and what pods tell the status."""

from __future__ import annotations

import pytest
from servedmodel_operator import model_image, status
from servedmodel_operator.policy import Policy
from servedmodel_operator.render import render
from servedmodel_operator.spec import InvalidSpec, parse

REF = "127.0.0.1:5000/models/iris:1"


def body(storage=None, **spec):
    return {
        "metadata": {"name": "iris", "namespace": "ns", "uid": "u1", "generation": 2},
        "spec": {"storage": storage or {"image": {"reference": REF}}, **spec},
    }


def deployment(objects):
    return next(o for o in objects if o["kind"] == "Deployment")


def config(objects):
    return next(o for o in objects if o["kind"] == "ConfigMap")["data"]["models.config"]


def test_an_image_source_parses_and_its_base_path_is_under_the_images_models_folder():
    spec = parse(body())
    assert spec.model_image is not None and spec.model_image.reference == REF
    assert spec.model_image.pull_policy == "IfNotPresent"
    assert spec.claim_name == ""
    assert spec.base_path == "/models/root/models/iris"
    assert (
        parse(body({"image": {"reference": REF}, "path": "other"})).base_path == "/models/root/models/other"
    )
    assert parse(body(modelName="m2")).base_path == "/models/root/models/m2"


@pytest.mark.parametrize(
    ("storage", "extra", "message"),
    [
        (
            {"image": {"reference": REF}, "persistentVolumeClaim": {"claimName": "m"}},
            {},
            "exactly one source: persistentVolumeClaim, s3 or image "
            "(it sets persistentVolumeClaim and image)",
        ),
        ({"path": "x"}, {}, "exactly one source"),
        ({"image": {}}, {}, "storage.image.reference must be an image reference"),
        ({"image": {"reference": REF, "pullPolicy": "Daily"}}, {}, "pullPolicy must be one of"),
        ({"image": {"reference": REF, "pullSecrets": [{}]}}, {}, "pullSecrets entries must name a Secret"),
        ({"image": {"reference": REF}}, {"export": {"source": {"path": "a.keras"}}}, "publish --image"),
    ],
)
def test_bad_image_sources_say_what_to_change(storage, extra, message):
    with pytest.raises(InvalidSpec, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(body(storage, **extra))


def test_modelcar_pod_runs_the_image_as_a_sidecar_and_reads_it_through_the_shared_link():
    objects = render(
        parse(body({"image": {"reference": REF, "pullSecrets": [{"name": "regcred"}]}})),
        image_mount="modelcar",
    )
    pod = deployment(objects)["spec"]["template"]["spec"]
    assert pod["shareProcessNamespace"] is True
    [sidecar] = pod["initContainers"]
    assert sidecar["name"] == "model" and sidecar["image"] == REF
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar: running before the server starts
    assert sidecar["command"] == ["/servedmodel/modelcar"]
    assert sidecar["volumeMounts"] == [{"name": "model-link", "mountPath": "/servedmodel/link"}]
    assert sidecar["securityContext"]["runAsUser"] == 1000 == pod["securityContext"]["runAsUser"]
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "model-link", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}} in pod["volumes"]
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])
    [server] = pod["containers"]
    assert {"name": "model-link", "mountPath": "/models", "readOnly": True} in server["volumeMounts"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert 'base_path: "/models/root/models/iris"' in config(objects)


def test_image_volume_pod_mounts_the_image_and_runs_nothing_from_it():
    objects = render(
        parse(body({"image": {"reference": REF, "pullPolicy": "Always"}})), image_mount="imageVolume"
    )
    pod = deployment(objects)["spec"]["template"]["spec"]
    assert "initContainers" not in pod and "shareProcessNamespace" not in pod
    assert {"name": "model-image", "image": {"reference": REF, "pullPolicy": "Always"}} in pod["volumes"]
    [server] = pod["containers"]
    assert {"name": "model-image", "mountPath": "/models/root", "readOnly": True} in server["volumeMounts"]
    assert 'base_path: "/models/root/models/iris"' in config(objects)


def test_a_new_reference_rolls_the_pods_without_dropping_below_the_desired_count():
    old = deployment(render(parse(body())))
    new = deployment(render(parse(body({"image": {"reference": "127.0.0.1:5000/models/iris:2"}}))))
    assert old["spec"]["template"] != new["spec"]["template"]
    assert new["spec"]["template"]["spec"]["initContainers"][0]["image"] == "127.0.0.1:5000/models/iris:2"
    assert new["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


def test_a_claim_still_renders_its_volume_as_before():
    pod = deployment(render(parse(body({"persistentVolumeClaim": {"claimName": "m"}}))))["spec"]["template"][
        "spec"
    ]
    assert pod["volumes"][0] == {
        "name": "models",
        "persistentVolumeClaim": {"claimName": "m", "readOnly": True},
    }
    assert "initContainers" not in pod


@pytest.mark.parametrize(
    ("runtime", "mounts"),
    [
        ("containerd://1.6.20", False),
        ("containerd://1.7.24", False),
        ("containerd://2.0.5", False),
        ("containerd://2.1.0", True),
        ("cri-o://1.30.4", False),
        ("cri-o://1.31.0", True),
        ("docker://28.0.0", False),
        ("", False),
    ],
)
def test_runtimes_that_mount_images(runtime, mounts):
    assert model_image.runtime_mounts_images(runtime) is mounts


def test_the_mount_is_chosen_from_the_gate_and_the_runtimes():
    assert model_image.choose_mount(False, None)[0] == "modelcar"
    assert model_image.choose_mount(True, None)[0] == "imageVolume"
    mount, why = model_image.choose_mount(True, ["containerd://2.1.1", "containerd://1.6.20"])
    assert mount == "modelcar" and "containerd://1.6.20" in why
    assert model_image.choose_mount(True, ["cri-o://1.32.0"])[0] == "imageVolume"


def test_the_gate_probe_reads_whether_the_api_server_kept_the_image_volume():
    probe = model_image.probe_deployment("ns")
    assert model_image.gate_on_from_probe(probe) is True
    probe["spec"]["template"]["spec"]["volumes"] = [{"name": "probe"}]  # what a disabled gate leaves
    assert model_image.gate_on_from_probe(probe) is False


def pod(name, *, ready=False, image=REF, image_id="", waiting=None):
    state = {"waiting": waiting} if waiting else {"running": {}}
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "initContainerStatuses": [{"name": "model", "image": image, "imageID": image_id, "state": state}],
            "containerStatuses": [{"name": "tensorflow-serving", "image": "srv:1", "state": {"running": {}}}],
        },
    }


def test_pods_give_the_digests_ready_servers_run():
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    view = model_image.observe(
        [
            pod("p1", ready=True, image_id=f"127.0.0.1:5000/models/iris@{a}"),
            pod("p2", ready=True, image_id=f"127.0.0.1:5000/models/iris@{b}"),
            pod("p3", ready=False, image_id=f"127.0.0.1:5000/models/iris@{b}"),
        ],
        REF,
    )
    assert view.digests == {a: 1, b: 1} and view.failure is None
    record = status.image_status(REF, "modelcar", "why", view.digests, None)
    assert record["digest"] == ""  # two digests during a roll
    assert record["servedDigests"] == [{"digest": a, "readyReplicas": 1}, {"digest": b, "readyReplicas": 1}]
    assert status.image_status(REF, "modelcar", "why", {a: 2}, None)["digest"] == a


def test_an_image_volume_digest_comes_from_the_servers_volume_mount_status():
    a = "sha256:" + "e" * 64
    mounted = {
        "metadata": {"name": "p"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "tensorflow-serving",
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/etc/servedmodel"},
                        {
                            "name": "model-image",
                            "mountPath": "/models/root",
                            "image": {"imageRef": f"r/m@{a}"},
                        },
                    ],
                }
            ],
        },
    }
    assert model_image.observe([mounted], REF).digests == {a: 1}


def test_a_missing_image_becomes_a_condition_with_the_kubelets_message():
    message = f'failed to pull and unpack image "{REF}": {REF}: not found'
    view = model_image.observe(
        [
            pod("old", ready=True, image="127.0.0.1:5000/models/iris:0", image_id="x@sha256:" + "c" * 64),
            pod("new", waiting={"reason": "ErrImagePull", "message": message}),
        ],
        REF,
    )
    assert view.failure == (
        "ModelImageNotFound",
        f"pod new cannot pull the model image {REF} (ErrImagePull): {message}",
    )
    rolling = [
        status.Condition("Ready", True, "ModelServing", ""),
        status.Condition("Progressing", True, "RollingOut", ""),
        status.Condition("Degraded", False, "AsExpected", ""),
    ]
    during_roll = status.with_image_pull_failure(rolling, view.failure)
    assert [c.status for c in during_roll] == [True, True, True]  # the older pods keep serving
    assert during_roll[2].reason == "ModelImageNotFound"
    fresh = [status.Condition("Ready", False, "ReplicasNotReady", ""), *rolling[1:]]
    assert status.with_image_pull_failure(fresh, view.failure)[0].reason == "ModelImageNotFound"


@pytest.mark.parametrize(
    ("reason", "message", "code"),
    [
        ("ImagePullBackOff", "Back-off pulling image", "ModelImagePullFailed"),
        ("ErrImagePull", "401 Unauthorized", "ModelImagePullFailed"),
        ("InvalidImageName", "bad", "InvalidModelImage"),
        ("ErrImageNeverPull", "not present", "ModelImageNotPresent"),
    ],
)
def test_pull_failures_are_named_by_what_went_wrong(reason, message, code):
    view = model_image.observe([pod("p", waiting={"reason": reason, "message": message})], REF)
    assert view.failure is not None and view.failure[0] == code


def test_the_image_policy_covers_the_model_image():
    problems = Policy(image_prefixes=("tensorflow/serving:",)).violations(
        parse(body(image="tensorflow/serving:2"))
    )
    assert problems == [
        f"spec.storage.image.reference '{REF}' is not allowed by the allowedImagePrefixes rule: images must "
        "start with one of tensorflow/serving:"
    ]
