"""The operator's rights in every test that runs it: the rules the Helm chart installs, never cluster-admin.

The chart's ClusterRole is rendered by the real helm (tools/helm/fetch.sh), so the rights the tests grant
cannot drift from the ones users install: a rule the operator needs and the chart lacks fails the
integration and fault tests on the path that needs it (canaries, exports, ServiceMonitors, pruning).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "servedmodel-operator"


@cache
def tools_dir() -> Path:
    """helm and kubectl 1.35, fetched once into the cache outside the clone."""
    proc = subprocess.run(
        ["bash", str(ROOT / "tools" / "helm" / "fetch.sh")],
        stdout=subprocess.PIPE,
        text=True,
        # This Python later runs kubernetes-validate from the folder's pylib/, so it installs it there.
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert proc.returncode == 0, "tools/helm/fetch.sh failed (see its log above)"
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert (path / "helm").is_file() and (path / "kubectl").is_file(), f"no helm/kubectl in {path}"
    return path


def chart_rules(values: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The rules of the chart's ClusterRole (cluster-wide install), as `helm template` renders them."""
    roles = [d for d in _rbac_objects(tuple(values)) if d["kind"] == "ClusterRole"]
    assert len(roles) == 1, f"expected one ClusterRole in the chart's rbac.yaml, got {len(roles)}"
    rules = roles[0]["rules"]
    assert rules, "the chart's ClusterRole has no rules"
    return rules


def chart_rules_watching_namespaces() -> list[dict[str, Any]]:
    """The chart's cluster-wide rules plus the one its ClusterRole adds when given namespaces to watch (kopf
    then lists and watches namespaces): what an operator run with `--namespace` patterns needs."""
    watching = [d for d in _rbac_objects(("--set", "watchNamespaces={probe}")) if d["kind"] == "ClusterRole"]
    assert len(watching) == 1, "expected one ClusterRole in the chart's rbac.yaml"
    extra = [r for r in watching[0]["rules"] if "namespaces" in r.get("resources", [])]
    assert extra, "the chart adds no rule on namespaces when given namespaces to watch"
    return [*chart_rules(), *extra]


def leader_election_rules(lease_name: str) -> list[dict[str, Any]]:
    """The rules of the chart's leader-election Role (in the release namespace), for a Lease of that name."""
    values = ("--set", f"leaderElection.leaseName={lease_name}")
    roles = [
        d
        for d in _rbac_objects(values)
        if d["kind"] == "Role" and d["metadata"]["name"].endswith("-leader-election")
    ]
    assert len(roles) == 1, "expected the chart's leader-election Role in rbac.yaml"
    return roles[0]["rules"]


def grant_namespaced(
    kubectl: Callable[..., subprocess.CompletedProcess],
    user: str,
    name: str,
    namespace: str,
    rules: list[dict[str, Any]],
) -> None:
    """Bind `rules` to `user` as Role `name` in `namespace` and wait until the authorizer allows them."""
    objects = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    ]
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "resourceAttributes": {
                "namespace": namespace,
                "verb": rules[-1]["verbs"][0],
                "group": rules[-1]["apiGroups"][0],
                "resource": rules[-1]["resources"][0],
            },
        },
    }
    deadline = time.monotonic() + 30
    while not json.loads(kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review)).stdout)[
        "status"
    ].get("allowed"):
        if time.monotonic() > deadline:
            raise AssertionError(f"Role {namespace}/{name} did not take effect for {user}")
        time.sleep(0.3)


@cache
def _rbac_objects(values: tuple[str, ...]) -> list[dict[str, Any]]:
    """The objects of the chart's rbac.yaml, as `helm template` renders them with `values`."""
    home = tools_dir() / "helm-home"
    proc = subprocess.run(
        [
            str(tools_dir() / "helm"),
            "template",
            "rights",
            str(CHART),
            "--show-only",
            "templates/rbac.yaml",
            *values,
        ],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        },
    )
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def grant_chart_rights(
    kubectl: Callable[..., subprocess.CompletedProcess],
    user: str,
    name: str,
    rules: list[dict[str, Any]] | None = None,
    subject: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Bind the chart's rules (or `rules`, derived from them) to `user` (or `subject`) as ClusterRole `name`
    and wait until the API server's authorizer answers with them. `kubectl(*args, input=, check=)` is an
    admin's kubectl."""
    rules = chart_rules() if rules is None else rules
    subject = subject or {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
    objects = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [subject],
        },
    ]
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    # RBAC objects reach the authorizer (an informer cache) a moment after they are stored: wait until the
    # first and the last rule are allowed (one ClusterRole and one binding, so both are then in effect).
    who = (
        user
        if subject["kind"] == "User"
        else f"system:serviceaccount:{subject['namespace']}:{subject['name']}"
    )
    probes = [rules[0], rules[-1]]
    deadline = time.monotonic() + 30
    while True:
        pending = [r for r in probes if not _allowed(kubectl, who, r)]
        if not pending:
            return rules
        if time.monotonic() > deadline:
            raise AssertionError(f"the chart's rules did not take effect for {who}: {pending}")
        time.sleep(0.3)


def _allowed(kubectl: Callable[..., subprocess.CompletedProcess], who: str, rule: dict[str, Any]) -> bool:
    """The authorizer's answer (a SubjectAccessReview: no API discovery, so CRDs need not exist)."""
    name, _, sub = rule["resources"][0].partition("/")
    attrs = {"verb": rule["verbs"][0], "group": rule["apiGroups"][0], "resource": name}
    if sub:
        attrs["subresource"] = sub
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": who, "resourceAttributes": attrs},
    }
    if who.startswith("system:serviceaccount:"):
        review["spec"]["groups"] = ["system:serviceaccounts", "system:authenticated"]
    out = kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review)).stdout
    return bool(json.loads(out)["status"].get("allowed"))


def without(rules: list[dict[str, Any]], verb: str, resources: set[str]) -> list[dict[str, Any]]:
    """The rules with `verb` removed on `resources` (to prove what the operator does without it)."""
    out = []
    for rule in rules:
        if set(rule["resources"]) & resources:
            kept = [r for r in rule["resources"] if r not in resources]
            if kept:
                out.append({**rule, "resources": kept})
            verbs = [v for v in rule["verbs"] if v != verb]
            taken = [r for r in rule["resources"] if r in resources]
            if verbs:
                out.append({**rule, "resources": taken, "verbs": verbs})
        else:
            out.append(rule)
    return out


def rbac_denials(audit_events: list[dict[str, Any]]) -> list[str]:
    """Requests the authorizer refused (403 "cannot <verb> resource"); an admission 403 (a namespace being
    terminated, which tests delete while the operator works) is not a missing right."""
    out = []
    for e in audit_events:
        status = e.get("responseStatus") or {}
        if status.get("code") == 403 and "cannot" in status.get("message", ""):
            ref = e.get("objectRef") or {}
            out.append(
                f"{e['verb']} {ref.get('apiGroup') or 'core'}/{ref.get('resource')}: {status['message']}"
            )
    return out
