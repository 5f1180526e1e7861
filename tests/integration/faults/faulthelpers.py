"""Checks the fault tests share: "everything converged, nothing duplicated, orphaned or lost"."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kubehelpers import Kube, OperatorProcess, condition, eventually, servedmodel
from servedmodel_operator.constants import ANNOTATION_SPEC_HASH
from servedmodel_operator.render import render
from servedmodel_operator.spec import parse

CHILD_KINDS = ("configmaps", "services", "deployments")
MANAGED = "app.kubernetes.io/managed-by=servedmodel-operator"


def apply_many(kube: Kube, docs: list[dict[str, Any]]) -> None:
    """One kubectl call for many objects (a List), as a user applying a folder would."""
    kube.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))


def convergence_problems(kube: Kube, namespace: str, ready: bool = True) -> list[str]:
    """Everything that keeps `namespace` from being converged; empty when it is.

    Converged: every ServedModel has its ConfigMap, Service and Deployment with the rendered content
    (spec hash), status for its current generation (Ready=True when `ready`); every managed child has
    exactly one controller owner reference, to a ServedModel that exists with that uid.
    """
    problems = []
    sms = {sm["metadata"]["name"]: sm for sm in kube.list("servedmodels", namespace)}
    uids = {sm["metadata"]["uid"]: name for name, sm in sms.items()}
    children = {
        (obj["kind"], obj["metadata"]["name"]): obj
        for plural in CHILD_KINDS
        for obj in kube.list(plural, namespace, MANAGED)
    }
    for (kind, name), obj in children.items():
        controllers = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")]
        if len(controllers) != 1:
            problems.append(f"{kind} {name} has {len(controllers)} controller owner references")
        elif controllers[0]["uid"] not in uids:
            problems.append(f"{kind} {name} is orphaned: owner uid {controllers[0]['uid']} does not exist")
    expected = set()
    for name, sm in sms.items():
        if sm["metadata"].get("deletionTimestamp"):
            continue
        status = sm.get("status") or {}
        if status.get("observedGeneration") != sm["metadata"]["generation"]:
            problems.append(
                f"{name}: status is for generation {status.get('observedGeneration')}, "
                f"not {sm['metadata']['generation']}"
            )
        if ready and condition(sm, "Ready").get("status") != "True":
            problems.append(f"{name}: Ready is {condition(sm, 'Ready')}")
        for want in render(parse(sm)):
            key = (want["kind"], want["metadata"]["name"])
            expected.add(key)
            live = children.get(key)
            if live is None:
                problems.append(f"{name}: {key[0]} {key[1]} is missing")
                continue
            got = (live["metadata"].get("annotations") or {}).get(ANNOTATION_SPEC_HASH)
            if got != want["metadata"]["annotations"][ANNOTATION_SPEC_HASH]:
                problems.append(f"{name}: {key[0]} {key[1]} does not have the rendered content")
            ref = [r for r in live["metadata"].get("ownerReferences") or [] if r.get("controller")]
            if ref and ref[0]["uid"] != sm["metadata"]["uid"]:
                problems.append(f"{name}: {key[0]} {key[1]} is owned by another uid")
    extra = set(children) - expected
    if extra:
        problems.append(f"children no ServedModel renders: {sorted(extra)[:10]}")
    return problems


def assert_converged(kube: Kube, namespace: str, ready: bool = True) -> bool:
    problems = convergence_problems(kube, namespace, ready)
    assert not problems, f"{len(problems)} problems, first: {problems[:8]}"
    return True


def wait_converged(
    kube: Kube, namespace: str, what: str, timeout: float = 60, interval: float = 0.5, ready: bool = True
) -> None:
    """Until `namespace` is converged (see `convergence_problems`); on timeout, the problems left."""
    eventually(
        lambda: assert_converged(kube, namespace, ready), timeout=timeout, interval=interval, what=what
    )


def start_serving(
    spawn_operator: Callable[..., OperatorProcess], kube: Kube, namespace: str, model: str, operator: str
) -> OperatorProcess:
    """An operator of the test's own (named `operator`), live, with ServedModel `model` applied and served."""
    op = spawn_operator(name=operator)
    op.wait_live()
    apply_many(kube, [servedmodel(model, namespace)])
    wait_converged(kube, namespace, f"{model} served")
    return op
