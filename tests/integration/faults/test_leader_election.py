"""Two operator replicas with Lease-based leader election (`--leader-elect`), the leader SIGKILLed 10 times
while ServedModels change.

Each time: the standby takes over within the lease duration plus 5 s (the Lease names it, and an edit made
right after the kill reaches its Deployment), no change is lost (at the end every ServedModel has the
children of its last spec), and two replicas never write at once: the API server's audit log attributes
every write to one replica (each sends its identity in its User-Agent), and no replica writes before it
took the Lease or after its successor took it.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time

import pytest
import requests
from chartrights import grant_namespaced, leader_election_rules
from faulthelpers import apply_many, wait_converged
from kubehelpers import eventually, servedmodel
from localcluster import OPERATOR_USER

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LEASE = "servedmodel-faults"
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 6, 4, 1
KILLS = 10
MODELS = 8


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Api:
    """Reads and merge-patches as the cluster admin, without a kubectl process per call."""

    def __init__(self, cluster) -> None:
        self.base = cluster.server
        self.s = requests.Session()
        self.s.trust_env = False
        self.s.verify = str(cluster.ca_file)
        self.s.headers["Authorization"] = f"Bearer {cluster.admin_token}"

    def lease(self, ns: str) -> dict:
        resp = self.s.get(
            f"{self.base}/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{LEASE}", timeout=5
        )
        return resp.json().get("spec") or {} if resp.status_code == 200 else {}

    def edit(self, ns: str, name: str, value: str) -> None:
        self.s.patch(
            f"{self.base}/apis/servedmodel.io/v1alpha1/namespaces/{ns}/servedmodels/{name}",
            json={"spec": {"podAnnotations": {"edit": value}}},
            headers={"Content-Type": "application/merge-patch+json"},
            timeout=10,
        ).raise_for_status()

    def deployment_edit(self, ns: str, name: str) -> str | None:
        resp = self.s.get(f"{self.base}/apis/apps/v1/namespaces/{ns}/deployments/{name}", timeout=5)
        if resp.status_code != 200:
            return None
        return ((resp.json()["spec"]["template"]["metadata"].get("annotations")) or {}).get("edit")


def test_the_standby_takes_over_every_time_the_leader_is_killed(fcluster, fkube, fnamespace, spawn_operator):
    ns = fnamespace
    # The rights the chart gives for its Lease, here in the test's namespace (the chart: its own namespace).
    grant_namespaced(fcluster.kubectl, OPERATOR_USER, "leader-election", ns, leader_election_rules(LEASE))
    api = Api(fcluster)
    env = {
        "SERVEDMODEL_LEASE_DURATION_SECONDS": str(LEASE_DURATION),
        "SERVEDMODEL_RENEW_DEADLINE_SECONDS": str(RENEW_DEADLINE),
        "SERVEDMODEL_RETRY_PERIOD_SECONDS": str(RETRY_PERIOD),
    }
    replicas: dict[str, object] = {}

    def start_replica() -> None:
        name = f"replica-{len(replicas)}"
        op = spawn_operator(
            "--leader-elect",
            f"--leader-election-namespace={ns}",
            f"--leader-election-id={LEASE}",
            env={**env, "POD_NAME": name},
            name=name,
        )
        replicas[name] = op
        op.wait_live()

    def holder() -> str:
        return (api.lease(ns).get("holderIdentity") or "").split("_")[0]

    started = time.time()
    start_replica()
    eventually(lambda: holder() == "replica-0", timeout=30, what="the first replica to lead")
    acquired_at = {"replica-0": _ts(api.lease(ns)["acquireTime"])}  # by replica, wall time
    start_replica()
    names = [f"m{i}" for i in range(MODELS)]
    apply_many(fkube, [servedmodel(n, ns) for n in names])
    wait_converged(fkube, ns, "served by the leader", timeout=90, interval=1)

    # Edits all along: each ServedModel's pod template carries the last value written for it.
    last: dict[str, str] = {}
    stop = threading.Event()

    def edit_forever() -> None:  # m0 is kept for the edits made right after each kill
        rng, i = random.Random(7), 0
        while not stop.is_set():
            name = rng.choice(names[1:])
            i += 1
            api.edit(ns, name, str(i))
            last[name] = str(i)
            stop.wait(0.3)

    editor = threading.Thread(target=edit_forever, daemon=True)
    editor.start()
    kills: list[tuple[str, float]] = []  # (killed replica, when its successor acquired the Lease: wall)
    takeovers: list[float] = []
    try:
        for k in range(KILLS):
            time.sleep(random.uniform(1, 3))  # the leader is busy with edits when it dies
            leader = holder()
            assert leader in replicas, f"Lease held by {leader!r}"
            replicas[leader].kill()
            killed = time.monotonic()
            api.edit(ns, "m0", f"after-kill-{k}")  # made while nobody leads
            last["m0"] = f"after-kill-{k}"
            new = eventually(
                lambda leader=leader: (h := holder()) not in ("", leader) and h,
                timeout=LEASE_DURATION + 5,
                interval=0.1,
                what=f"a standby to take the Lease from {leader} (kill {k + 1})",
            )
            eventually(
                lambda k=k: api.deployment_edit(ns, "m0") == f"after-kill-{k}",
                timeout=max(0.5, LEASE_DURATION + 5 - (time.monotonic() - killed)),
                interval=0.1,
                what=f"{new} to apply the edit made after kill {k + 1}",
            )
            takeovers.append(time.monotonic() - killed)
            acquired_at[new] = _ts(api.lease(ns)["acquireTime"])
            kills.append((leader, acquired_at[new]))
            start_replica()  # the next standby (a Deployment would restart the killed pod)
    finally:
        stop.set()
        editor.join(timeout=10)

    # No change lost: every ServedModel ends with the children of its last spec.
    wait_converged(fkube, ns, "converged after the kills", timeout=90, interval=1)
    for name, value in last.items():
        assert api.deployment_edit(ns, name) == value, f"{name}: the last edit ({value}) was lost"

    # Never two writers at once, from the audit log.
    writes = fcluster.audited_writes(OPERATOR_USER, started)
    ours = [e for e in writes if (e.get("objectRef") or {}).get("resource") != "leases"]
    assert ours, "the audit log shows no write of the operator"
    by_replica: dict[str, list[float]] = {}
    sequence: list[str] = []
    for e in sorted(ours, key=lambda e: e["requestReceivedTimestamp"]):
        agent = e.get("userAgent", "")
        assert agent.startswith("servedmodel-operator/replica-"), f"a write not from a replica: {agent}"
        who = agent.split("/", 1)[1].split("_")[0]
        by_replica.setdefault(who, []).append(_ts(e["requestReceivedTimestamp"]))
        if not sequence or sequence[-1] != who:
            sequence.append(who)
    assert len(sequence) == len(set(sequence)), f"writers interleaved: {sequence}"
    for who, writes in by_replica.items():
        assert min(writes) >= acquired_at[who], f"{who} wrote before it took the Lease"
    for who, successor_acquired in kills:  # (a request sent just before a kill may arrive a moment later)
        assert max(by_replica.get(who, [0])) < successor_acquired, (
            f"{who} wrote after its successor took over"
        )
    print(f"takeovers (s): {[round(t, 1) for t in takeovers]}; writers in turn: {sequence}")
    assert len(takeovers) == KILLS and max(takeovers) <= LEASE_DURATION + 5
