"""helm install, upgrade and uninstall against the local control plane, checked through the API."""

from __future__ import annotations

import json
import uuid

from e2ehelpers import CHART, CRD_NAME, UserTools, ensure_namespace

RELEASE = "sm"
NAME = "sm-servedmodel-operator"


def rules_of(admin: UserTools, kind: str, *where: str) -> set[tuple[str, str, str]]:
    role = admin.get_json(kind, NAME, *where)
    return {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def test_helm_install_upgrade_uninstall(admin: UserTools):
    suffix = uuid.uuid4().hex[:6]
    ns, watched = f"sm-helm-{suffix}", [f"sm-helm-{suffix}-a", f"sm-helm-{suffix}-b"]
    for name in [ns, *watched]:
        ensure_namespace(admin, name)  # restricted Pod Security: the operator pod must meet it to run
    try:
        # -- install: default values, cluster-wide ------------------------------------------------------
        # The session's CRD was applied with `kubectl apply --server-side` (field manager "kubectl"), as a
        # user of dist/install.yaml or crds/ would; Helm 4 server-side-applies crds/ too and then conflicts
        # on the atomic .spec.versions list, so the CRD is left alone (docs/install.md tells users the same).
        out = admin.helm(
            "install", RELEASE, str(CHART), "-n", ns, "--skip-crds", "--wait", "--timeout=120s"
        ).stdout
        assert "STATUS: deployed" in out and "kubectl get servedmodels" in out  # NOTES.txt is shown
        deploy = admin.get_json("deployment", NAME, "-n", ns)
        # Two replicas by default: one acts (leader election with a Lease), the other waits.
        assert deploy["status"].get("availableReplicas") == 2, deploy["status"]
        pod_spec = deploy["spec"]["template"]["spec"]
        assert pod_spec["serviceAccountName"] == NAME
        assert pod_spec["containers"][0]["args"] == [
            "--log-format=json",
            "--liveness=http://0.0.0.0:8080/healthz",
            "--metrics-port=9090",
            "--leader-elect",
            f"--leader-election-id={NAME}",
        ]
        assert admin.exists("serviceaccount", NAME, "-n", ns)
        binding = admin.get_json("clusterrolebinding", NAME)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": ns}]
        cluster_rules = rules_of(admin, "clusterrole")
        assert ("apps", "deployments", "patch") in cluster_rules and (
            "",
            "namespaces",
            "list",
        ) not in cluster_rules
        assert admin.exists("crd", CRD_NAME)
        assert admin.get_json("pods", "-n", ns, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]

        # -- upgrade: only two namespaces, a PDB, other resources --------------------------------------
        values = [
            "--set",
            f"watchNamespaces={{{watched[0]},{watched[1]}}}",
            "--set",
            "podDisruptionBudget.enabled=true",
            "--set",
            "resources.limits.memory=300Mi",
            "--set",
            "logFormat=plain",
        ]
        out = admin.helm("upgrade", RELEASE, str(CHART), "-n", ns, "--wait", "--timeout=120s", *values).stdout
        assert "STATUS: deployed" in out and "REVISION: 2" in out
        deploy = admin.get_json("deployment", NAME, "-n", ns)
        container = deploy["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == [
            "--log-format=plain",
            "--liveness=http://0.0.0.0:8080/healthz",
            "--metrics-port=9090",
            f"--namespace={watched[0]}",
            f"--namespace={watched[1]}",
            "--leader-elect",
            f"--leader-election-id={NAME}",
        ]
        assert container["resources"]["limits"]["memory"] == "300Mi"
        assert deploy["status"].get("availableReplicas") == 2 and deploy["status"].get("updatedReplicas") == 2
        assert admin.get_json("pdb", NAME, "-n", ns)["spec"]["maxUnavailable"] == 1
        assert rules_of(admin, "clusterrole") == {
            ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
            ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
            ("", "namespaces", "list"),
            ("", "namespaces", "watch"),
        }
        for name in watched:
            assert ("apps", "deployments", "patch") in rules_of(admin, "role", "-n", name)
            rb = admin.get_json("rolebinding", NAME, "-n", name)
            assert rb["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": ns}]
        history = json.loads(admin.helm("history", RELEASE, "-n", ns, "-o", "json").stdout)
        assert [h["status"] for h in history] == ["superseded", "deployed"]

        # -- uninstall: everything goes but the CRD (Helm never deletes crds/) --------------------------
        admin.helm("uninstall", RELEASE, "-n", ns, "--wait", "--timeout=120s")
        for args in (
            ["deployment", NAME, "-n", ns],
            ["serviceaccount", NAME, "-n", ns],
            ["pdb", NAME, "-n", ns],
            ["clusterrole", NAME],
            ["clusterrolebinding", NAME],
            *(["role", NAME, "-n", w] for w in watched),
            *(["rolebinding", NAME, "-n", w] for w in watched),
        ):
            assert not admin.exists(*args), args
        assert admin.exists("crd", CRD_NAME)
        assert admin.helm("list", "-n", ns, "-q").stdout.strip() == ""
    finally:
        admin.helm("uninstall", RELEASE, "-n", ns, check=False)
        for name in [ns, *watched]:
            admin.kubectl("delete", "namespace", name, "--wait=false", check=False)
