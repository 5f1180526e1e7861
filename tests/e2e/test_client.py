"""The `servedmodel` client against a model served on the real node: the TF Serving stand-in image in a pod
the kubelet runs, a hostPath volume with two versions the exporter published, the Service kube-proxy routes.

From the host (a laptop: cluster addresses route nowhere) the client goes through the API server's
service proxy with a kubeconfig; from the node's network namespace with cluster DNS as its resolver (what a
pod has) it goes straight to the Service, over REST and gRPC. Every answer is compared with what Keras
computes for the same inputs; every error with what the API server or the model server says on its own.

The ServedModels are reconciled by the session's operator (tests/conftest.py): it renders the Deployment
and Service; it cannot poll these model servers (it reaches servers on loopback), which the client does
not need.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from e2ehelpers import ROOT, UserTools, ensure_namespace, service_account_kubeconfig, wait_for
from kerasmodels import fixed_model
from localcluster import LocalCluster
from modelvolume import ModelVolume
from realnode import RealNode

SAMPLES = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0], [-3.0, 1.5, 2.5, -0.5]]
MODEL = "clientdemo"
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


@dataclass
class Served:
    namespace: str
    keras: dict[int, np.ndarray]  # version -> Keras' own answer for SAMPLES
    output: str  # the signature's output name, as TF Serving's metadata says
    cluster_ip: str
    work: Path


def laptop_env() -> dict[str, str]:
    """The environment of a client outside the cluster (even if the tests themselves run in a pod)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "operator"), env.get("PYTHONPATH", "")])
    return env


def servedmodel_cli(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "servedmodel_operator.client", *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        env=laptop_env(),
        timeout=120,
    )


@pytest.fixture(scope="module")
def served(
    admin: UserTools, cluster: LocalCluster, real_node: RealNode, node_image, operator, tmp_path_factory
) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("client")
    namespace = f"t-client-{uuid.uuid4().hex[:6]}"  # the session operator watches t-*
    volume = ModelVolume.create(prefix="servedmodel-client-")
    keras_answers = {}
    for version, variant in ((1, "a"), (2, "b")):
        model = fixed_model(variant)
        keras_answers[version] = np.asarray(model(np.asarray(SAMPLES, dtype=np.float32)))
        source = work / f"{variant}.keras"
        model.save(source)
        volume.publish(source, MODEL, version)
    ensure_namespace(admin, namespace)  # restricted Pod Security
    admin.kubectl("apply", "-f", "-", input=volume.claim(namespace))
    spec = {
        "image": node_image("tfserving-double"),
        "imagePullPolicy": "Never",
        "storage": {"persistentVolumeClaim": {"claimName": "models"}, "path": MODEL},
        "versionPolicy": {"specific": {"versions": [1, 2]}},
        "versionLabels": {"stable": 1, "canary": 2},
        "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1500Mi"}},
        **real_node.pod_placement(),
    }
    idle = {**spec, "replicas": 0}  # a ServedModel with nothing behind its Service
    for name, body in ((MODEL, spec), ("idle", idle)):
        sm = {"apiVersion": "servedmodel.io/v1alpha1", "kind": "ServedModel",
              "metadata": {"name": name, "namespace": namespace}, "spec": body}  # fmt: skip
        admin.kubectl("apply", "-f", "-", input=json.dumps(sm))
    try:

        def ready_pod():
            pods = admin.get_json("pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={MODEL}")[
                "items"
            ]
            for pod in pods:
                conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}
                if conditions.get("Ready") == "True":
                    return pod
            return None

        pod = wait_for(ready_pod, timeout=420, interval=2, what="the model server pod Ready (kubelet probes)")
        assert pod["spec"]["nodeName"] == real_node.name
        wait_for(lambda: admin.exists("service", "idle", "-n", namespace), timeout=60, what="Service idle")
        # The output name as TF Serving itself reports it (kubectl, not the client, asks).
        raw = admin.kubectl(
            "get",
            "--raw",
            f"/api/v1/namespaces/{namespace}/services/{MODEL}:rest/proxy/v1/models/{MODEL}/metadata",
        ).stdout
        outputs = json.loads(raw)["metadata"]["signature_def"]["signature_def"]["serving_default"]["outputs"]
        assert len(outputs) == 1, outputs
        cluster_ip = admin.get_json("service", MODEL, "-n", namespace)["spec"]["clusterIP"]
        yield Served(namespace, keras_answers, next(iter(outputs)), cluster_ip, work)
    finally:
        admin.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        admin.kubectl("delete", "pv", f"{namespace}-models", "--wait=false", check=False)
        volume.remove()


def test_python_api_answers_as_keras_by_version_and_label(served: Served, cluster: LocalCluster):
    from servedmodel_operator.client import predict

    kw = {"namespace": served.namespace, "kubeconfig": str(cluster.kubeconfig), "via": "proxy"}
    for how, expected in (
        ({}, 2),  # the latest version the policy serves
        ({"version": 1}, 1),
        ({"version": 2}, 2),
        ({"label": "stable"}, 1),
        ({"label": "canary"}, 2),
    ):
        outputs = predict(MODEL, SAMPLES, **kw, **how)
        assert list(outputs) == [served.output], how
        got = outputs[served.output]
        assert got.dtype == np.float32 and got.shape == (3, 3), how
        np.testing.assert_allclose(got, served.keras[expected], **TOLERANCE, err_msg=str(how))
    # NumPy instances work too.
    outputs = predict(MODEL, np.asarray(SAMPLES, dtype=np.float32), **kw, version=1)
    np.testing.assert_allclose(outputs[served.output], served.keras[1], **TOLERANCE)


def test_cli_predicts_through_the_api_server(served: Served, cluster: LocalCluster):
    """From a laptop: no --via, no port-forward; the kubeconfig's credentials and the service proxy."""
    batch = served.work / "batch.json"
    batch.write_text(json.dumps({"instances": SAMPLES}))
    for args, expected in (
        (["--instances", json.dumps(SAMPLES)], 2),
        (["--instances", f"@{batch}", "--version", "1"], 1),
        (["--instances", f"@{batch}", "--label", "canary"], 2),
    ):
        proc = servedmodel_cli(cluster.kubeconfig, "predict", MODEL, "-n", served.namespace, *args)
        assert proc.returncode == 0, proc.stderr
        answer = json.loads(proc.stdout)
        assert list(answer) == [served.output]
        np.testing.assert_allclose(np.asarray(answer[served.output]), served.keras[expected], **TOLERANCE)


def test_kubectl_plugin_from_the_installed_package(
    served: Served, cluster: LocalCluster, tools_dir: Path, tmp_path: Path
):
    """pip installs the console scripts; kubectl finds `kubectl-servedmodel` on PATH as a plugin."""
    source = tmp_path / "src"
    source.mkdir()
    for part in ("pyproject.toml", "README.md", "operator", "exporter"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy
        copy(ROOT / part, source / part)
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(source),
        ],  # fmt: skip
        check=True,
        capture_output=True,
    )
    assert (site / "bin" / "servedmodel").exists() and (site / "bin" / "kubectl-servedmodel").exists()
    env = {**laptop_env(), "PATH": f"{site / 'bin'}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(site),
           "KUBECONFIG": str(cluster.kubeconfig)}  # fmt: skip
    kubectl = str(tools_dir / "kubectl")
    plugins = subprocess.run([kubectl, "plugin", "list"], capture_output=True, text=True, env=env)
    assert str(site / "bin" / "kubectl-servedmodel") in plugins.stdout, plugins.stdout + plugins.stderr
    proc = subprocess.run(
        [
            kubectl,
            "servedmodel",
            "predict",
            MODEL,
            "-n",
            served.namespace,
            "--instances",
            json.dumps(SAMPLES),
            "--label",
            "stable",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(
        np.asarray(json.loads(proc.stdout)[served.output]), served.keras[1], **TOLERANCE
    )
    helped = subprocess.run(
        [kubectl, "servedmodel", "predict", "--help"], capture_output=True, text=True, env=env
    )
    assert helped.returncode == 0 and "usage: kubectl servedmodel predict" in helped.stdout
    assert "servedmodel predict demo --instances" in helped.stdout  # examples
    listed = subprocess.run([str(site / "bin" / "servedmodel"), "list", "-n", served.namespace],
                            capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert names == ["clientdemo", "idle"]


def test_status_shows_labels_conditions_and_endpoints(served: Served, cluster: LocalCluster):
    proc = servedmodel_cli(cluster.kubeconfig, "status", MODEL, "-n", served.namespace)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert ["ServedModel:", f"{served.namespace}/{MODEL}"] in lines
    version_rows = {row[0]: row for row in lines if row and row[0] in ("1", "2")}
    assert "stable" in version_rows["1"] and "canary" in version_rows["2"]
    assert any(row[:1] == ["Ready"] and row[1] in ("True", "False", "Unknown") for row in lines)
    assert f"http://{MODEL}.{served.namespace}.svc:8501/v1/models/{MODEL}" in proc.stdout
    assert f"{MODEL}.{served.namespace}.svc:8500" in proc.stdout
    as_json = json.loads(
        servedmodel_cli(cluster.kubeconfig, "status", MODEL, "-n", served.namespace, "-o", "json").stdout
    )
    assert as_json["spec"]["versionLabels"] == {"stable": 1, "canary": 2}


def direct_error(served: Served, real_node: RealNode, path: str, body: object) -> str:
    """TF Serving's own error for a request sent straight to the Service's ClusterIP (no client code)."""
    script = (
        "import json, sys, urllib.request as u, urllib.error as e\n"
        f"req = u.Request('http://{served.cluster_ip}:8501{path}', data=json.dumps({body!r}).encode(),"
        " headers={'Content-Type': 'application/json'})\n"
        "try:\n    u.urlopen(req, timeout=20)\nexcept e.HTTPError as err:\n"
        "    print(json.loads(err.read())['error'])\n"
    )
    proc = real_node.run_in_netns([sys.executable, "-c", script], timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr
    return proc.stdout.strip()


def test_errors_are_clear(served: Served, cluster: LocalCluster, real_node: RealNode, admin: UserTools):
    ns, kc = served.namespace, cluster.kubeconfig
    # Unknown model.
    proc = servedmodel_cli(kc, "predict", "nosuchmodel", "-n", ns, "--instances", "[[1, 2, 3, 4]]")
    assert proc.returncode == 3 and f'no ServedModel "nosuchmodel" in namespace "{ns}"' in proc.stderr, (
        proc.stderr
    )
    # Bad input: TF Serving's message, as TF Serving gives it.
    bad = [["a", "b", "c", "d"]]
    proc = servedmodel_cli(kc, "predict", MODEL, "-n", ns, "--instances", json.dumps(bad))
    expected = direct_error(served, real_node, f"/v1/models/{MODEL}:predict", {"instances": bad})
    assert proc.returncode == 4 and expected in proc.stderr and "(400)" in proc.stderr, (
        expected,
        proc.stderr,
    )
    # A version the server does not serve.
    proc = servedmodel_cli(
        kc, "predict", MODEL, "-n", ns, "--instances", json.dumps(SAMPLES), "--version", "7"
    )
    expected = direct_error(
        served, real_node, f"/v1/models/{MODEL}/versions/7:predict", {"instances": SAMPLES}
    )
    assert proc.returncode == 4 and expected in proc.stderr, (expected, proc.stderr)
    # Not ready: a Service with no model server behind it.
    proc = servedmodel_cli(kc, "predict", "idle", "-n", ns, "--instances", json.dumps(SAMPLES))
    assert proc.returncode == 6, proc.stderr
    assert 'ServedModel "idle"' in proc.stderr and 'no endpoints available for service "idle"' in proc.stderr
    # gRPC cannot cross the API server.
    proc = servedmodel_cli(kc, "predict", MODEL, "-n", ns, "--instances", json.dumps(SAMPLES), "--grpc")
    assert proc.returncode == 2 and "gRPC cannot go through the Kubernetes API server" in proc.stderr


def test_missing_rights_are_explained(
    served: Served, cluster: LocalCluster, admin: UserTools, tmp_path: Path
):
    ns = served.namespace
    admin.kubectl("create", "serviceaccount", "nobody", "-n", ns)
    admin.kubectl("create", "serviceaccount", "reader", "-n", ns)
    admin.kubectl(
        "create", "role", "sm-reader", "-n", ns, "--verb=get", "--resource=servedmodels.servedmodel.io"
    )
    admin.kubectl(
        "create", "rolebinding", "sm-reader", "-n", ns, "--role=sm-reader", f"--serviceaccount={ns}:reader"
    )
    nobody = service_account_kubeconfig(admin, cluster, ns, "nobody", tmp_path / "nobody.yaml")
    reader = service_account_kubeconfig(admin, cluster, ns, "reader", tmp_path / "reader.yaml")
    args = ("predict", MODEL, "-n", ns, "--instances", json.dumps(SAMPLES))
    proc = servedmodel_cli(nobody, *args)
    assert proc.returncode == 5, proc.stderr
    assert f'User "system:serviceaccount:{ns}:nobody" cannot get resource "servedmodels"' in proc.stderr
    assert "needs the verb `get` on `servedmodels.servedmodel.io`" in proc.stderr
    proc = servedmodel_cli(reader, *args)
    assert proc.returncode == 5, proc.stderr
    assert f'User "system:serviceaccount:{ns}:reader" cannot create resource "services/proxy"' in proc.stderr
    assert "needs the verb `create` on `services/proxy`" in proc.stderr
    # With that one rule more, the same identity gets its answer.
    admin.kubectl("create", "role", "sm-caller", "-n", ns, "--verb=create,get", "--resource=services/proxy")
    admin.kubectl(
        "create", "rolebinding", "sm-caller", "-n", ns, "--role=sm-caller", f"--serviceaccount={ns}:reader"
    )
    proc = wait_for(
        lambda: (p := servedmodel_cli(reader, *args)).returncode == 0 and p, timeout=30, what="RBAC"
    )
    np.testing.assert_allclose(
        np.asarray(json.loads(proc.stdout)[served.output]), served.keras[2], **TOLERANCE
    )


def test_in_cluster_rest_and_grpc_straight_to_the_service(
    served: Served, cluster: LocalCluster, real_node: RealNode
):
    """In a pod the client skips the API server for the call itself: REST and gRPC go to
    <service>.<namespace>.svc, resolved by cluster DNS and routed by kube-proxy. Run from the node's network
    namespace with cluster DNS (as a pod has it); KUBERNETES_SERVICE_HOST says "in the cluster"."""
    env = {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBECONFIG": str(cluster.kubeconfig),
        "PYTHONPATH": laptop_env()["PYTHONPATH"],
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    base = [sys.executable, "-m", "servedmodel_operator.client", "predict", MODEL, "-n", served.namespace,
            "--instances", json.dumps(SAMPLES)]  # fmt: skip
    cases = [([], 2), (["--label", "stable"], 1), (["--grpc"], 2), (["--grpc", "--version", "1"], 1),
             (["--grpc", "--label", "canary"], 2)]  # fmt: skip
    for extra, expected in cases:
        proc = real_node.run_in_netns([*base, *extra], timeout=180, cluster_dns=True, env=env)
        assert proc.returncode == 0, (extra, proc.stderr)
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
        assert list(answer) == [served.output], extra
        np.testing.assert_allclose(np.asarray(answer[served.output]), served.keras[expected], **TOLERANCE)
    # Bad input over gRPC: the server's INVALID_ARGUMENT, shown with its code.
    bad = [*base[:-1], json.dumps([[1.0, 2.0]]), "--grpc"]
    proc = real_node.run_in_netns(bad, timeout=180, cluster_dns=True, env=env)
    assert proc.returncode == 4 and "INVALID_ARGUMENT" in proc.stderr, proc.stderr


def test_client_in_a_pod_with_its_service_account(
    served: Served, admin: UserTools, real_node: RealNode, node_image
):
    """The client as a pod runs it, on the real node: credentials from the pod's ServiceAccount token,
    namespace from the ServiceAccount, the call straight to the Service by its cluster DNS name, REST and
    gRPC. The pod runs the stand-in image (it has the client's dependencies: requests, kubernetes, NumPy,
    grpcio and the TF Serving stubs) with our package mounted from a ConfigMap, under restricted Pod
    Security."""
    ns = served.namespace
    package = ROOT / "operator" / "servedmodel_operator"
    files = {"servedmodel_operator/__init__.py": package / "__init__.py"}
    files.update(
        {f"servedmodel_operator/client/{p.name}": p for p in sorted((package / "client").glob("*.py"))}
    )
    code = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "client-code", "namespace": ns},
        "data": {key.replace("/", "__"): path.read_text() for key, path in files.items()},
    }
    admin.kubectl("apply", "-f", "-", input=json.dumps(code))
    admin.kubectl("create", "serviceaccount", "caller", "-n", ns)
    admin.kubectl(
        "create", "role", "sm-get", "-n", ns, "--verb=get", "--resource=servedmodels.servedmodel.io"
    )
    admin.kubectl(
        "create", "rolebinding", "sm-get", "-n", ns, "--role=sm-get", f"--serviceaccount={ns}:caller"
    )
    instances = json.dumps(SAMPLES)
    call = f"python -m servedmodel_operator.client predict {MODEL} --instances '{instances}'"
    script = f"{call} --version 1 && {call} --grpc --label canary"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client", "namespace": ns},
        "spec": {
            "serviceAccountName": "caller",
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "client",
                    "image": node_image("tfserving-double"),
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script],
                    "env": [
                        {"name": "PYTHONPATH", "value": "/client"},
                        {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "3"},
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "256Mi"},
                        "limits": {"memory": "1500Mi"},
                    },
                    "volumeMounts": [
                        {"name": "code", "mountPath": "/client", "readOnly": True},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "code",
                    "configMap": {
                        "name": "client-code",
                        "items": [{"key": key.replace("/", "__"), "path": key} for key in files],
                    },
                },
                {"name": "tmp", "emptyDir": {}},
            ],
            **real_node.pod_placement(),
        },
    }
    admin.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def finished():
        phase = admin.get_json("pod", "client", "-n", ns)["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(finished, timeout=300, interval=2, what="the client pod to finish")
    logs = admin.kubectl("logs", "client", "-n", ns).stdout
    assert phase == "Succeeded", logs
    answers = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert len(answers) == 2, logs
    for answer, version in zip(answers, (1, 2), strict=True):  # REST --version 1, gRPC --label canary (2)
        assert list(answer) == [served.output]
        np.testing.assert_allclose(np.asarray(answer[served.output]), served.keras[version], **TOLERANCE)
