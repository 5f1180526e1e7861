"""The Helm chart as a user meets it: lint, render, schema-validate, values-schema errors, server dry run.

Kubernetes schema validation is offline: the PyPI package kubernetes-validate ships the JSON schemas of
Kubernetes 1.28 ... 1.37 (tools/helm/fetch.sh installs it beside helm); `kubectl apply --dry-run=server`
against the local control plane (1.34) then checks what a schema cannot (CRD schemas, defaults, admission).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from e2ehelpers import CHART, ROOT, UserTools, by_kind, docs, ensure_namespace

KUBE_VERSIONS = ["1.30.0", "1.32.0", "1.35.0"]

RICH_VALUES = {
    "watchNamespaces": ["ml-prod", "ml-staging"],
    "leaderElection": {"leaseName": "sm-leader"},
    "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    "image": {"digest": "sha256:" + "0123456789abcdef" * 4},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/sm"}},
    "podAnnotations": {"example.com/scrape": "false"},
    "podLabels": {"team": "ml"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
    "verbose": True,
    "settings": {"workers": 8},
}


def values_file(tmp_path: Path, values: dict, name: str = "values.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def validate(tools_dir: Path, manifest: Path, version: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tools_dir / "pylib")}
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, str(manifest)],
        capture_output=True,
        text=True,
        env=env,
    )


def test_chart_crd_is_a_byte_identical_copy_of_the_source_crd():
    source = (ROOT / "crds" / "servedmodel.io_servedmodels.yaml").read_bytes()
    copy = (CHART / "crds" / "servedmodel.io_servedmodels.yaml").read_bytes()
    assert copy == source, "the chart's CRD is stale: run tools/helm/sync-crd.sh"
    proc = subprocess.run(
        ["bash", str(ROOT / "tools" / "helm" / "sync-crd.sh"), "--check"], capture_output=True
    )
    assert proc.returncode == 0, proc.stderr


def test_kubernetes_older_than_1_30_is_refused_by_name(user: UserTools):
    """The CRD's create-only name rule needs optionalOldSelf (1.30+): older clusters get Helm's clear refusal
    rather than a CRD their API server would reject or quietly strip."""
    proc = user.helm("template", "x", str(CHART), "--kube-version", "1.29.0", check=False)
    assert proc.returncode != 0
    refusal = "chart requires kubeVersion: >=1.30.0-0 which is incompatible with Kubernetes v1.29.0"
    assert refusal in proc.stderr, proc.stderr
    assert "kind: Deployment" in user.helm("template", "x", str(CHART), "--kube-version", "1.30.0").stdout


def test_helm_lint_strict_passes_with_default_and_rich_values(user: UserTools, tmp_path: Path):
    out = user.helm("lint", "--strict", str(CHART)).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    out = user.helm("lint", "--strict", str(CHART), "-f", values_file(tmp_path, RICH_VALUES)).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("variant", ["default", "rich"])
def test_rendered_manifests_are_valid_for_several_kubernetes_versions(
    user: UserTools, tools_dir: Path, tmp_path: Path, variant: str
):
    args = ["--include-crds"] + (["-f", values_file(tmp_path, RICH_VALUES)] if variant == "rich" else [])
    manifest = tmp_path / f"{variant}.yaml"
    manifest.write_text(user.render(*args))
    kinds = {o["kind"] for o in docs(manifest.read_text())}
    assert {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
    } <= kinds
    for version in KUBE_VERSIONS:
        proc = validate(tools_dir, manifest, version)
        assert proc.returncode == 0, f"Kubernetes {version}:\n{proc.stdout}{proc.stderr}"
        for kind in ("deployment", "clusterrole", "customresourcedefinition"):
            assert f"passed for resource {kind}/" in proc.stdout + proc.stderr
    # The validator is not vacuous: a misspelt field fails it.
    broken = docs(manifest.read_text())
    by_kind(broken, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    bad = tmp_path / "broken.yaml"
    bad.write_text(yaml.safe_dump_all(broken))
    proc = validate(tools_dir, bad, KUBE_VERSIONS[-1])
    assert proc.returncode != 0 and "imagePullPolcy" in proc.stdout + proc.stderr


def test_default_render_is_secure_and_least_privilege(user: UserTools):
    objs = docs(user.render())
    deploy = by_kind(objs, "Deployment")[0]
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deploy["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "servedmodel-operator",
        "app.kubernetes.io/instance": "servedmodel-operator",
    }
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsUser"] == 65532
    assert container["image"] == "ghcr.io/servedmodel/servedmodel-operator:0.1.0"
    assert container["args"] == [
        "--log-format=json",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-port=9090",
        "--leader-elect",
        "--leader-election-id=servedmodel-operator",
    ]
    # Two replicas, one leader: spread over nodes, never both taken by a drain, rolled one at a time.
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"] == {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": deploy["spec"]["selector"]["matchLabels"]},
    }
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["SERVEDMODEL_LEASE_DURATION_SECONDS"] == "15"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["ports"] == [
        {"name": "health", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    (pdb,) = by_kind(objs, "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": deploy["spec"]["selector"]}
    # The Lease, and only it: a Role in the release namespace, get/update limited to its name.
    (lease_role,) = by_kind(objs, "Role")
    assert lease_role["metadata"]["name"] == "servedmodel-operator-leader-election"
    assert lease_role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["servedmodel-operator"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    (role,) = by_kind(objs, "ClusterRole")
    rules = role["rules"]
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert "secrets" not in rule["resources"], rule
    granted = {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert ("", "configmaps", "patch") in granted and ("", "configmaps", "create") in granted
    assert ("apps", "deployments", "update") not in granted and ("", "configmaps", "get") not in granted
    assert not any(g in ("kopf.dev", "coordination.k8s.io") for g, _, _ in granted), (
        "no cluster-wide Lease rights"
    )
    for labelled in objs:
        labels = labelled["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "servedmodel-operator", labelled["kind"]
        if labelled["kind"] != "CustomResourceDefinition":
            assert (
                labels["app.kubernetes.io/managed-by"] == "Helm"
                and labels["helm.sh/chart"] == "servedmodel-operator-0.1.0"
            )


def test_rich_render_scopes_rbac_to_the_watched_namespaces(user: UserTools, tmp_path: Path):
    objs = docs(user.render("-f", values_file(tmp_path, RICH_VALUES)))
    (cluster_role,) = by_kind(objs, "ClusterRole")
    cluster_resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert cluster_resources == {"customresourcedefinitions", "namespaces"}
    roles = [r for r in by_kind(objs, "Role") if not r["metadata"]["name"].endswith("-leader-election")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ml-prod", "ml-staging"]
    assert sorted(b["metadata"]["namespace"] for b in by_kind(objs, "RoleBinding")) == [
        "ml-prod",
        "ml-staging",
        "servedmodel-system",  # the leader-election binding, in the release namespace
    ]
    container = by_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [
        "--log-format=json",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-port=9090",
        "--namespace=ml-prod",
        "--namespace=ml-staging",
        "--leader-elect",
        "--leader-election-id=sm-leader",
        "--verbose",
    ]
    assert container["image"] == "ghcr.io/servedmodel/servedmodel-operator@sha256:" + "0123456789abcdef" * 4
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    (pdb,) = by_kind(objs, "PodDisruptionBudget")
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": by_kind(objs, "Deployment")[0]["spec"]["selector"],
    }


def test_long_release_names_are_truncated_to_63_characters(user: UserTools):
    release = "a-long-release-name-of-fifty-three-characters-exactly"  # Helm's longest release name
    assert len(release) == 53
    for obj in docs(user.render(release=release)):
        assert len(obj["metadata"]["name"]) <= 63 and not obj["metadata"]["name"].endswith("-")
        for value in obj["metadata"]["labels"].values():
            assert len(value) <= 63


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"watchNamespaces": "ml-prod"}, "watchNamespaces"),
        ({"watchNamespaces": ["ML_Prod"]}, "does not match pattern"),
        ({"replicaCount": -1}, "minimum"),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of"),
        ({"leaderElection": {"enabled": "yes"}}, "leaderElection/enabled"),
        ({"podAntiAffinity": "always"}, "podAntiAffinity"),
        ({"podDisruptionBudget": {"enabld": True}}, "additional properties 'enabld' not allowed"),
    ],
)
def test_values_schema_rejects_bad_values_with_a_clear_message(
    user: UserTools, tmp_path: Path, bad: dict, message: str
):
    proc = user.helm("template", "x", str(CHART), "-f", values_file(tmp_path, bad), check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr


def test_rich_render_passes_a_server_side_dry_run(admin: UserTools, tmp_path: Path):
    """The local API server (1.34) accepts every object as rendered."""
    suffix = uuid.uuid4().hex[:6]
    namespaces = [f"dry-{suffix}-a", f"dry-{suffix}-b"]
    for ns in ["dry-" + suffix, *namespaces]:
        ensure_namespace(admin, ns)
    values = {**RICH_VALUES, "watchNamespaces": namespaces}
    manifest = tmp_path / "rich.yaml"
    manifest.write_text(
        admin.render(
            "--include-crds",
            "--no-hooks",
            "-f",
            values_file(tmp_path, values),
            release="dry",
            namespace="dry-" + suffix,
        )
    )
    try:
        out = admin.kubectl("apply", "--dry-run=server", "-f", str(manifest)).stdout
        assert "deployment.apps/dry-servedmodel-operator created (server dry run)" in out, out
        lines = out.splitlines()
        assert (
            lines.count("role.rbac.authorization.k8s.io/dry-servedmodel-operator created (server dry run)")
            == 2
        )
        assert not admin.exists("deployment", "dry-servedmodel-operator", "-n", "dry-" + suffix)
    finally:
        for ns in ["dry-" + suffix, *namespaces]:
            admin.kubectl("delete", "namespace", ns, "--wait=false", check=False)
