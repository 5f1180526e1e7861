"""Ready says why when the model servers run but have no version to serve (the model folder holds none yet):
reason NoServableVersion, with what to publish where, instead of the generic ReplicasNotReady."""

from __future__ import annotations

import asyncio

from operatorfakes import MODEL_SERVERS, FakeApi, FakeCache
from servedmodel_operator import status as st
from servedmodel_operator.reconciler import Reconciler
from servedmodel_operator.render import SERVER_CONTAINER


def pod(state: str = "running", started: bool = False, ready: bool = False, name: str = SERVER_CONTAINER,
        terminating: bool = False) -> dict:  # fmt: skip
    meta = {"name": "m-1", "deletionTimestamp": "2026-01-01T00:00:00Z"} if terminating else {"name": "m-1"}
    container = {"name": name, "state": {state: {}}, "started": started, "ready": ready}
    return {"metadata": meta, "status": {"containerStatuses": [container]}}


def rollout(ready: bool = False, reason: str = "ReplicasNotReady") -> list[st.Condition]:
    return [
        st.Condition(st.READY, ready, reason, "0/1 model server replicas have a servable version."),
        st.Condition(st.PROGRESSING, True, "RollingOut", "1/1 replicas updated, 0 ready."),
        st.Condition(st.DEGRADED, False, "AsExpected", ""),
    ]


def test_only_running_servers_that_have_not_started_count():
    assert st.servers_without_a_version([pod()], SERVER_CONTAINER) == 1
    assert st.servers_without_a_version([pod(), pod()], SERVER_CONTAINER) == 2
    assert st.servers_without_a_version([pod(started=True)], SERVER_CONTAINER) == 0  # loaded, maybe not ready
    assert st.servers_without_a_version([pod(state="waiting")], SERVER_CONTAINER) == 0  # image pull, crash
    assert st.servers_without_a_version([pod(terminating=True)], SERVER_CONTAINER) == 0
    assert st.servers_without_a_version([pod(name="sync")], SERVER_CONTAINER) == 0  # a sidecar
    assert st.servers_without_a_version([{"metadata": {"name": "p"}, "status": {}}], SERVER_CONTAINER) == 0


def test_ready_says_no_servable_version_and_what_to_publish_where():
    conditions = st.with_no_servable_version(rollout(), 1, "iris", "vision/iris on claim 'models'")
    ready = conditions[0]
    assert (ready.type, ready.status, ready.reason) == ("Ready", False, "NoServableVersion")
    assert ready.message.startswith("0/1 model server replicas have a servable version: TF Serving runs")
    assert "no version of model 'iris' under vision/iris on claim 'models'" in ready.message
    assert "servedmodel-export publish MODEL.keras" in ready.message and "--model iris" in ready.message
    assert conditions[1:] == rollout()[1:]  # Progressing and Degraded untouched


def test_other_states_keep_their_reason():
    assert st.with_no_servable_version(rollout(), 0, "iris", "x") == rollout()  # no such server
    served = rollout(ready=True, reason="ModelServing")
    assert st.with_no_servable_version(served, 1, "iris", "x") == served
    stuck = rollout(reason="RolloutStuck")
    assert st.with_no_servable_version(stuck, 1, "iris", "x") == stuck


# -- through the reconciler, with an in-memory cluster ---------------------------------------------------


SM = {
    "apiVersion": "servedmodel.io/v1alpha1",
    "kind": "ServedModel",
    "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
    "spec": {"storage": {"persistentVolumeClaim": {"claimName": "models"}, "path": "vision/m"}},
}


def reconciled(pods: list[dict], counts: dict) -> tuple[FakeApi, dict, list]:
    """(api, Ready condition, requeues) of a reconcile that finds the Deployment with these counts."""
    first = FakeApi({MODEL_SERVERS: pods})
    asyncio.run(Reconciler(api=first, cache=FakeCache(SM)).reconcile(("ns", "m")))  # creates the children
    deployment = first.live[("Deployment", "m")]
    deployment["metadata"]["generation"] = 1
    deployment["status"] = {"observedGeneration": 1, "updatedReplicas": counts.get("replicas", 0), **counts}
    api, requeues = FakeApi({MODEL_SERVERS: pods}), []
    reconciler = Reconciler(api=api, cache=FakeCache(SM, first.live.values()))
    reconciler.requeue = lambda key, delay: requeues.append((key, delay))
    asyncio.run(reconciler.reconcile(("ns", "m")))
    ready = next(c for c in api.status_patches[-1]["status"]["conditions"] if c["type"] == "Ready")
    return api, ready, requeues


def test_a_running_server_without_a_version_is_reported_and_looked_at_again():
    api, ready, requeues = reconciled([pod()], {"replicas": 1})
    assert (ready["status"], ready["reason"]) == ("False", "NoServableVersion")
    assert "under vision/m on claim 'models'" in ready["message"]
    assert api.listed == [MODEL_SERVERS] and requeues == [(("ns", "m"), 10.0)]


def test_pods_are_read_only_while_some_exist_and_none_is_ready():
    api, ready, _ = reconciled([pod()], {})  # no pod yet
    assert ready["reason"] == "ReplicasNotReady" and api.listed == []
    api, ready, _ = reconciled([pod(state="waiting")], {"replicas": 1})  # pulling its image
    assert ready["reason"] == "ReplicasNotReady" and api.listed == [MODEL_SERVERS]
