"""storage.image through the real reconciler with an in-memory cluster: the mount follows what the API
server does with an image volume (kept: the gate is on; dropped or refused: off), a pod that cannot pull
the image shows in the conditions, the served digest comes from the pods, and a settled model lists no
pods at all."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from operatorfakes import MODEL_SERVERS, FakeApi, FakeCache
from servedmodel_operator.kube import ApiError
from servedmodel_operator.reconciler import Reconciler

REF = "127.0.0.1:5000/models/m:2"
DIGEST = "sha256:" + "d" * 64


class Api(FakeApi):
    """The API server with the ImageVolume gate `gate`: "on" keeps an image volume in the dry-run probe,
    "off" drops its source, "refused" rejects the probe."""

    def __init__(self, gate: str, pods: list[dict[str, Any]]) -> None:
        super().__init__({MODEL_SERVERS: pods})
        self.gate = gate
        self.probes = 0

    def admit(self, obj):
        if obj["metadata"]["name"] == "servedmodel-imagevolume-probe":
            self.probes += 1
            if self.gate == "refused":
                raise ApiError(
                    422, "spec.template.spec.volumes[0]: Required value: must specify a volume type"
                )
            if self.gate == "off":
                for volume in obj["spec"]["template"]["spec"]["volumes"]:
                    volume.pop("image")
        return obj


class Cache(FakeCache):
    def pvc_exists(self, namespace, name):
        raise AssertionError("an image needs no claim")

    def pvc_access_modes(self, namespace, name):
        raise AssertionError("an image needs no claim")


def servedmodel(status=None):
    return {
        "apiVersion": "servedmodel.io/v1alpha1",
        "kind": "ServedModel",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 3},
        "spec": {"storage": {"image": {"reference": REF}}},
        "status": status or {},
    }


def pod(ready: bool, waiting: dict | None = None) -> dict:
    state = {"waiting": waiting} if waiting else {"running": {}}
    return {
        "metadata": {"name": "m-abc"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "initContainerStatuses": [
                {
                    "name": "model",
                    "image": REF,
                    "imageID": f"127.0.0.1:5000/models/m@{DIGEST}",
                    "state": state,
                }
            ],
        },
    }


def reconcile(api: Api, cache: Cache, requeues: list | None = None) -> dict:
    reconciler = Reconciler(api=api, cache=cache)
    if requeues is not None:
        reconciler.requeue = lambda key, delay: requeues.append((key, delay))
    asyncio.run(reconciler.reconcile(("ns", "m")))
    return api.status_patches[-1]["status"]


def test_gate_off_renders_the_modelcar_and_a_missing_image_is_a_condition():
    message = f"failed to pull and unpack image {REF}: not found"
    api, requeues = Api("off", [pod(False, {"reason": "ErrImagePull", "message": message})]), []
    status = reconcile(api, Cache(servedmodel()), requeues)
    assert requeues == [(("ns", "m"), 5.0)]  # a failing pull changes no Deployment: looked at again
    template = api.live[("Deployment", "m")]["spec"]["template"]["spec"]
    assert template["initContainers"][0]["image"] == REF and template["shareProcessNamespace"] is True
    assert status["image"]["mount"] == "modelcar"
    assert "ImageVolume feature gate off" in status["image"]["mountReason"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Degraded"]["status"] == "True"
    assert conditions["Degraded"]["reason"] == conditions["Ready"]["reason"] == "ModelImageNotFound"
    assert message in conditions["Degraded"]["message"]


def test_a_refused_probe_also_means_the_modelcar_and_the_answer_is_cached():
    api = Api("refused", [])
    reconciler = Reconciler(api=api, cache=Cache(servedmodel()))
    asyncio.run(reconciler.reconcile(("ns", "m")))
    asyncio.run(reconciler.reconcile(("ns", "m")))
    assert api.probes == 1
    assert "initContainers" in api.live[("Deployment", "m")]["spec"]["template"]["spec"]


def test_gate_on_renders_an_image_volume():
    api = Api("on", [])
    status = reconcile(api, Cache(servedmodel()))
    volumes = api.live[("Deployment", "m")]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "model-image", "image": {"reference": REF, "pullPolicy": "IfNotPresent"}} in volumes
    assert status["image"]["mount"] == "imageVolume"


def test_the_digest_comes_from_ready_pods_and_a_settled_model_lists_none():
    api = Api("off", [pod(True)])
    sm = servedmodel()
    rendered = Cache(sm)
    reconcile(api, rendered)  # creates the Deployment
    deployment = copy.deepcopy(api.live[("Deployment", "m")])
    deployment["metadata"]["generation"] = 1
    deployment["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1}
    others = (copy.deepcopy(o) for (kind, _), o in api.live.items() if kind != "Deployment")
    cache = Cache(sm, [deployment, *others])
    requeues: list = []
    status = reconcile(api, cache, requeues)
    assert requeues == []  # ready and rolled out: nothing to look at again
    assert status["image"]["digest"] == DIGEST
    assert status["image"]["servedDigests"] == [{"digest": DIGEST, "readyReplicas": 1}]
    listed = len(api.listed)
    sm["status"] = status  # what the API server now holds
    reconcile_again = Reconciler(api=api, cache=cache)
    asyncio.run(reconcile_again.reconcile(("ns", "m")))
    assert len(api.listed) == listed  # settled, digest known: no request for pods
