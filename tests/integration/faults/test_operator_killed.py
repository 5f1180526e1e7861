"""The operator SIGKILLed at random moments while 100 ServedModels converge, then restarted: 20 cycles.

Each cycle starts an operator process and kills it with SIGKILL after a random 0.3-4 s (before, during or
after its start-up listing, in the middle of applies and status writes). While the cycles run, the world
keeps changing: ServedModels are edited, deleted and re-created with the same name (a new uid), so a
killed operator leaves half-done work of every kind. A last operator then runs undisturbed: everything
converges, no child is duplicated or orphaned, no ServedModel is lost.
"""

from __future__ import annotations

import random
import time

import pytest
from faulthelpers import apply_many, wait_converged
from kubehelpers import servedmodel

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 100
CYCLES = 20


def test_sigkill_during_convergence_loses_nothing(fkube, fnamespace, spawn_operator):
    rng = random.Random(20261125)
    ns = fnamespace
    names = [f"m{i:03d}" for i in range(N)]
    apply_many(fkube, [servedmodel(n, ns) for n in names])
    uid_before = {}
    kills_before_live = 0
    for cycle in range(CYCLES):
        op = spawn_operator(name=f"cycle{cycle}")
        time.sleep(rng.uniform(0.3, 4.0))
        if not op.alive():
            raise AssertionError(f"operator died by itself in cycle {cycle}:\n{op.tail()}")
        kills_before_live += "servedmodel-operator started" not in op.text()
        op.kill()
        # Change the world between kills: edits, and a delete + re-create under the same name.
        edited = rng.sample(names, 5)
        apply_many(fkube, [servedmodel(n, ns, podAnnotations={"cycle": str(cycle)}) for n in edited])
        if cycle % 4 == 1:
            victim = rng.choice(names)
            uid_before[victim] = fkube.get("servedmodel", victim, ns)["metadata"]["uid"]
            fkube.kubectl("-n", ns, "delete", "servedmodel", victim, "--wait=true", "--timeout=30s")
            apply_many(fkube, [servedmodel(victim, ns)])

    final = spawn_operator(name="final")
    final.wait_live()
    wait_converged(fkube, ns, "convergence after 20 kills", timeout=180, interval=3)
    assert final.alive()
    sms = fkube.list("servedmodels", ns)
    assert sorted(sm["metadata"]["name"] for sm in sms) == names, "a ServedModel was lost or added"
    for victim, old_uid in uid_before.items():
        dep = fkube.get("deployment", victim, ns)
        assert dep["metadata"]["ownerReferences"][0]["uid"] != old_uid, f"{victim} still owned by the old uid"
    # Exactly one ready pod per ServedModel (replicas 1): no duplicate Deployment ever ran.
    pods = [p for p in fkube.list("pods", ns) if not p["metadata"].get("deletionTimestamp")]
    per_instance = {}
    for p in pods:
        if p["status"].get("phase") == "Running":
            key = p["metadata"]["labels"]["app.kubernetes.io/instance"]
            per_instance[key] = per_instance.get(key, 0) + 1
    assert set(per_instance) == set(names)
    print(f"{kills_before_live} of {CYCLES} kills landed before the operator had finished starting up")
