"""dist/install.yaml: generated from the chart, applied and deleted with kubectl, idempotent; and the GitOps
kustomization that lists it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ehelpers import CRD_NAME, ROOT, SYSTEM_NAMESPACE, UserTools, docs
from localcluster import LocalCluster

DIST = ROOT / "dist" / "install.yaml"
CRD = ROOT / "crds" / "servedmodel.io_servedmodels.yaml"


def test_dist_install_yaml_is_rendered_from_the_current_chart(user: UserTools):
    proc = subprocess.run(
        ["bash", str(ROOT / "tools" / "helm" / "render.sh"), "--stdout"],
        capture_output=True,
        text=True,
        env={"HELM": str(user.bin_dir / "helm"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == DIST.read_text(), "dist/install.yaml is stale: run tools/helm/render.sh"
    kinds = [(o["kind"], o["metadata"]["name"]) for o in docs(DIST.read_text())]
    assert kinds == [
        ("Namespace", SYSTEM_NAMESPACE),
        ("CustomResourceDefinition", CRD_NAME),
        ("PodDisruptionBudget", "servedmodel-operator"),  # two replicas: a drain never takes both
        ("ServiceAccount", "servedmodel-operator"),
        ("ClusterRole", "servedmodel-operator"),
        ("ClusterRoleBinding", "servedmodel-operator"),
        ("Role", "servedmodel-operator-leader-election"),  # the Lease, in servedmodel-system only
        ("RoleBinding", "servedmodel-operator-leader-election"),
        ("Deployment", "servedmodel-operator"),
    ]


def test_dist_kustomization_builds_the_same_objects(user: UserTools):
    built = docs(user.kubectl("kustomize", str(ROOT / "dist")).stdout)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in built) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in docs(DIST.read_text())
    )


def resource_versions(admin: UserTools) -> dict[str, str]:
    out = admin.kubectl(
        "get",
        "-f",
        str(DIST),
        "-o",
        "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion}{'\\n'}{end}",
    )
    return dict(line.split("=", 1) for line in out.stdout.split())


@pytest.fixture
def own_cluster(tools_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserTools]:
    """helm/kubectl as admin of a control plane of this test's own: `kubectl delete -f dist/install.yaml`
    deletes the CRD with it, which would pull the ServedModel API from under the session's operator (and
    every test after this one)."""
    cp = LocalCluster(workdir=tmp_path_factory.mktemp("dist-controlplane"))
    cp.start()
    try:
        yield UserTools(tools_dir, cp.kubeconfig)
    finally:
        cp.stop()


def test_kubectl_apply_is_idempotent_and_delete_removes_everything(own_cluster: UserTools):
    admin = own_cluster
    first = admin.kubectl("apply", "-f", str(DIST)).stdout
    assert "deployment.apps/servedmodel-operator created" in first, first
    admin.kubectl(
        "wait",
        "-n",
        SYSTEM_NAMESPACE,
        "--for=condition=Available",
        "--timeout=90s",
        "deployment/servedmodel-operator",
    )
    before = resource_versions(admin)
    assert len(before) == 9
    second = admin.kubectl("apply", "-f", str(DIST)).stdout
    # kubectl says "configured" for a PodDisruptionBudget on every apply (its selector's patch strategy
    # is "replace", so the patch always carries it) although nothing changes: resourceVersions tell.
    assert all(
        line.endswith(" unchanged") or line.startswith("poddisruptionbudget.policy/")
        for line in second.splitlines()
    ), second
    assert resource_versions(admin) == before
    diff = admin.kubectl("diff", "-f", str(DIST), check=False)
    assert diff.returncode == 0, f"kubectl diff found drift:\n{diff.stdout}{diff.stderr}"

    admin.kubectl("delete", "-f", str(DIST), "--timeout=120s")
    for args in (
        ["namespace", SYSTEM_NAMESPACE],
        ["clusterrole", "servedmodel-operator"],
        ["clusterrolebinding", "servedmodel-operator"],
        ["crd", CRD_NAME],
    ):
        assert not admin.exists(*args), args
