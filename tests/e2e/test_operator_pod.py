"""The operator installed as users install it, running in a pod on the real node: our image (built from
operator/Dockerfile), pulled from the node's runtime by the kubelet, started as its non-root user with a
read-only root filesystem, made Ready by kubelet-executed probes, and reconciling ServedModels with the
chart's ServiceAccount. Once with `helm install/upgrade/uninstall`, once with `kubectl apply --server-side`
of dist/install.yaml through a kustomize overlay (what a GitOps repository holds).

Which identity did the work is read from the API server's audit log: only the pod's ServiceAccount token
authenticates as `system:serviceaccount:<namespace>:<account>`. The test session's own operator runs
beside it but watches only `t-*` namespaces (tests/conftest.py), and these are named `sm-oppod-*` and
`sm-dist-*`: the pod's operator is the only one acting on their ServedModels.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import yaml
from e2ehelpers import CRD_NAME, ROOT, SYSTEM_NAMESPACE, UserTools, ensure_namespace, wait_for
from kubehelpers import pvc, servedmodel
from localcluster import LocalCluster
from realnode import RealNode

CHART = ROOT / "charts" / "servedmodel-operator"
OPERATOR_UID = 65532  # operator/Dockerfile's USER


def split_ref(ref: str) -> tuple[str, str]:
    repository, tag = ref.rsplit(":", 1)
    return repository, tag


def operator_pods(admin: UserTools, namespace: str, instance: str) -> list[dict]:
    return admin.get_json("pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={instance}")["items"]


def ready_pods(admin: UserTools, namespace: str, instance: str, count: int, args0: str = "") -> list[dict]:
    """The release's pods once exactly `count` of them are up (not terminating) and the kubelet reports each
    Ready (its probes passed), all running the template whose first argument is `args0` (when given);
    else an empty list."""
    pods = [
        p for p in operator_pods(admin, namespace, instance) if not p["metadata"].get("deletionTimestamp")
    ]
    if len(pods) != count:
        return []
    for pod in pods:
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}
        if conditions.get("Ready") != "True":
            return []
        if args0 and pod["spec"]["containers"][0]["args"][0] != args0:
            return []
    return pods


def assert_runs_on_the_real_node_as_built(admin: UserTools, pod: dict, node: RealNode, image: str) -> None:
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    assert pod["spec"]["nodeName"] == node.name
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] and status["restartCount"] == 0, status
    assert status["image"] == image, status  # the very build of operator/Dockerfile this run made
    assert status["state"].get("running"), status
    # The process inside: our non-root user, and a root filesystem it cannot write.
    who = admin.kubectl("exec", "-n", namespace, name, "--", "python3", "-c", "import os; print(os.getuid())")
    assert who.stdout.strip() == str(OPERATOR_UID)
    write = admin.kubectl(
        "exec", "-n", namespace, name, "--", "python3", "-c", "open('/usr/local/x', 'w')", check=False
    )
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write.stderr
    # Its own view of health, as the kubelet's probes see it.
    health = admin.kubectl(
        "exec",
        "-n",
        namespace,
        name,
        "--",
        "python3",
        "-c",
        "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8080/healthz', timeout=5).status)",
    )
    assert health.stdout.strip() == "200"


def writes_by(cluster: LocalCluster, username: str, namespace: str, since: float) -> list[str]:
    """`verb resource/name` of every write `username` made in `namespace`, from the audit log."""
    found = []
    for event in cluster.audited_writes(username, since):
        ref = event.get("objectRef") or {}
        if ref.get("namespace") == namespace and event["responseStatus"]["code"] < 400:
            found.append(f"{event['verb']} {ref.get('resource')}/{ref.get('subresource', '')}")
    return found


def assert_reconciled_by(
    admin: UserTools, cluster: LocalCluster, username: str, namespace: str, since: float
) -> None:
    """A new ServedModel in `namespace` gets its children, and status, written by `username`."""
    name = f"m{uuid.uuid4().hex[:5]}"
    admin.kubectl("apply", "-f", "-", input=pvc("models", namespace))
    admin.kubectl("apply", "-f", "-", input=json.dumps(servedmodel(name, namespace)))

    def children_and_status():
        writes = writes_by(cluster, username, namespace, since)
        sm = admin.get_json("servedmodel", name, "-n", namespace)
        observed = (sm.get("status") or {}).get("observedGeneration")
        done = {"patch deployments/", "patch services/", "patch configmaps/", "patch servedmodels/status"}
        return observed == 1 and done <= set(writes) and writes

    wait_for(children_and_status, timeout=120, what=f"{username} to reconcile {namespace}/{name}")
    deploy = admin.get_json("deployment", name, "-n", namespace, "--show-managed-fields")
    managers = {m["manager"] for m in deploy["metadata"]["managedFields"]}
    assert "servedmodel-operator" in managers, managers


def test_helm_installs_the_operator_image_on_the_real_node(
    admin: UserTools, cluster: LocalCluster, real_node: RealNode, node_image, tmp_path: Path
):
    image = node_image("operator")
    repository, tag = split_ref(image)
    suffix = uuid.uuid4().hex[:6]
    release, ns, watched = f"op{suffix}", f"sm-oppod-{suffix}", f"sm-oppod-{suffix}-models"
    for name in (ns, watched):
        ensure_namespace(admin, name)  # restricted Pod Security: the operator pod must meet it to run
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
                "watchNamespaces": [watched],
                **real_node.pod_placement(),
            }
        )
    )
    sa = f"{release}-servedmodel-operator"
    username = f"system:serviceaccount:{ns}:{sa}"
    run_helm_lifecycle(admin, cluster, real_node, image, release, ns, watched, values, sa, username)


def run_helm_lifecycle(admin, cluster, real_node, image, release, ns, watched, values, sa, username) -> None:
    try:
        started = time.monotonic()
        since = time.time() - 1
        admin.helm(
            "install",
            release,
            str(CHART),
            "-n",
            ns,
            "--skip-crds",
            "-f",
            str(values),
            "--wait",
            "--timeout=240s",
        )
        # Two replicas by default: one leads (Lease), the other waits with warm caches.
        pods = wait_for(
            lambda: ready_pods(admin, ns, release, 2), timeout=120, what="both operator pods Ready"
        )
        took = time.monotonic() - started
        print(f"\n[e2e] helm install -> operator pods Ready on {real_node.name}: {took:.1f}s")
        for pod in pods:
            assert pod["spec"]["serviceAccountName"] == sa
            assert_runs_on_the_real_node_as_built(admin, pod, real_node, image)
        assert_reconciled_by(admin, cluster, username, watched, since)

        # -- helm upgrade with a changed value rolls the pods --------------------------------------------
        first = {p["metadata"]["name"] for p in pods}
        admin.helm(
            "upgrade",
            release,
            str(CHART),
            "-n",
            ns,
            "-f",
            str(values),
            "--set",
            "logFormat=plain",
            "--wait",
            "--timeout=240s",
        )
        pods = wait_for(
            lambda: ready_pods(admin, ns, release, 2, args0="--log-format=plain"),
            timeout=180,
            what="two new operator pods Ready",
        )
        assert not first & {p["metadata"]["name"] for p in pods}
        for pod in pods:
            assert_runs_on_the_real_node_as_built(admin, pod, real_node, image)
        wait_for(
            lambda: not first & {p["metadata"]["name"] for p in operator_pods(admin, ns, release)},
            timeout=120,
            what="the first operator pods to go",
        )
        assert_reconciled_by(admin, cluster, username, watched, time.time() - 1)

        # -- helm uninstall leaves the CRD and the ServedModels -------------------------------------------
        models_before = {
            m["metadata"]["name"] for m in admin.get_json("servedmodels", "-n", watched)["items"]
        }
        admin.helm("uninstall", release, "-n", ns, "--wait", "--timeout=120s")
        wait_for(lambda: not operator_pods(admin, ns, release), timeout=120, what="the operator pods to go")
        assert admin.exists("crd", CRD_NAME)
        models_after = {m["metadata"]["name"] for m in admin.get_json("servedmodels", "-n", watched)["items"]}
        assert len(models_before) == 2 and models_after == models_before
    finally:
        admin.helm("uninstall", release, "-n", ns, check=False)
        for name in (ns, watched):
            admin.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_dist_install_yaml_runs_the_operator_image_on_the_real_node(
    admin: UserTools, cluster: LocalCluster, real_node: RealNode, node_image, tmp_path: Path
):
    """dist/ as a GitOps repository uses it: a kustomize overlay that names our image and places the pod."""
    image = node_image("operator")
    repository, tag = split_ref(image)
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    placement = real_node.pod_placement()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(ROOT / "dist", overlay)],  # kustomize takes no absolute path
                "images": [
                    {"name": "ghcr.io/servedmodel/servedmodel-operator", "newName": repository, "newTag": tag}
                ],
                "patches": [
                    {
                        "target": {"kind": "Deployment", "name": "servedmodel-operator"},
                        "patch": yaml.safe_dump(
                            {
                                "apiVersion": "apps/v1",
                                "kind": "Deployment",
                                "metadata": {"name": "servedmodel-operator", "namespace": SYSTEM_NAMESPACE},
                                "spec": {"template": {"spec": {**placement}}},
                            }
                        ),
                    }
                ],
            }
        )
    )
    watched = f"sm-dist-{uuid.uuid4().hex[:6]}"
    ensure_namespace(admin, watched)
    username = f"system:serviceaccount:{SYSTEM_NAMESPACE}:servedmodel-operator"
    run_dist_install(admin, cluster, real_node, image, overlay, watched, username)


def run_dist_install(admin, cluster, real_node, image, overlay, watched, username) -> None:
    try:
        since = time.time() - 1
        admin.kubectl("apply", "--server-side", "-k", str(overlay))
        admin.kubectl(
            "wait",
            "-n",
            SYSTEM_NAMESPACE,
            "--for=condition=Available",
            "--timeout=180s",
            "deployment/servedmodel-operator",
        )
        replicas = admin.get_json("deployment", "servedmodel-operator", "-n", SYSTEM_NAMESPACE)["spec"][
            "replicas"
        ]
        pods = wait_for(
            lambda: ready_pods(admin, SYSTEM_NAMESPACE, "servedmodel-operator", replicas),
            timeout=120,
            what="the operator pods Ready",
        )
        for pod in pods:
            assert_runs_on_the_real_node_as_built(admin, pod, real_node, image)
        assert_reconciled_by(admin, cluster, username, watched, since)
    finally:
        # Everything but the CRD, which the rest of the session (and the ServedModels) keep using.
        admin.kubectl("delete", "namespace", SYSTEM_NAMESPACE, "--wait=true", "--timeout=120s", check=False)
        admin.kubectl(
            "delete",
            "clusterrole,clusterrolebinding",
            "servedmodel-operator",
            "--ignore-not-found",
            check=False,
        )
        admin.kubectl("delete", "namespace", watched, "--wait=false", check=False)
