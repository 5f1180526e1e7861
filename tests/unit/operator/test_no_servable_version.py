"""Ready says why when the model servers run but have no version to serve (the model folder holds none yet):
reason NoServableVersion, with what to publish where, instead of the generic ReplicasNotReady."""

from __future__ import annotations

from servedmodel_operator import status as st
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
