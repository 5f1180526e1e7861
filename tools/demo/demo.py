"""`make demo`: a ServedModel turned into a TensorFlow Serving Deployment, end to end, in about a minute.

1. A cluster: the one KUBECONFIG points at if it is set, otherwise a local control plane started here
   (etcd, kube-apiserver, controller-manager, scheduler, kwok fake nodes; see tools/controlplane).
2. The operator installed as users install it: `helm install` of charts/servedmodel-operator (CRD,
   ServiceAccount, least-privilege RBAC, Deployment). No operator image is published from this repository
   and no kubelet runs containers here, so the chart's Deployment is scaled to 0 and the operator runs as a
   process on this machine, with the chart's ServiceAccount token: the same identity and rights.
3. A demo Keras model, published with the exporter as version 1 in a local folder (what a Job would
   write to the volume), a namespace and a model volume (PersistentVolume + claim).
4. examples/minimal.yaml applied; it waits for Ready=True and prints what was created and the status.

On a terminal it then keeps everything running until Ctrl-C, so you can look around with kubectl.
No kubelet runs containers locally (kwok marks pods Running/Ready), so TF Serving itself does not run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "controlplane"))

from localcluster import LocalCluster, build_binaries  # noqa: E402

NAMESPACE = "servedmodel-demo"
OPERATOR_NAMESPACE = "servedmodel-system"
RELEASE = "servedmodel-operator"


def say(msg: str) -> None:
    print(f"\033[1m==> {msg}\033[0m" if sys.stdout.isatty() else f"==> {msg}", flush=True)


def kubectl(bin_dir: Path, kubeconfig: Path, *args: str, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        [str(bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def publish_demo_model(models_dir: Path) -> None:
    """A tiny Keras model, published by the exporter as <models>/demo/1/ (verified, atomic)."""
    script = (
        "import keras, numpy as np\n"
        "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation='relu'),\n"
        "                      keras.layers.Dense(1)])\n"
        f"m.save({str(models_dir / 'demo.keras')!r})\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "servedmodel_exporter.cli",
            "publish",
            str(models_dir / "demo.keras"),
            "--base-path",
            str(models_dir),
            "--model",
            "demo",
            "--version",
            "auto",
            "--warmup",
            "1",
        ],
        check=True,
        env=env,
    )


def storage_manifest(host_path: Path, local: bool) -> str:
    claim = f"""apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: models, namespace: {NAMESPACE}}}
spec:
  accessModes: [ReadWriteMany]
  resources: {{requests: {{storage: 1Gi}}}}
"""
    if not local:
        return claim  # a real cluster's default StorageClass provisions it
    return f"""apiVersion: v1
kind: PersistentVolume
metadata: {{name: servedmodel-demo-models}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteMany]
  hostPath: {{path: {host_path}}}
  claimRef: {{namespace: {NAMESPACE}, name: models}}
---
{claim}  storageClassName: ""
  volumeName: servedmodel-demo-models
"""


def helm_install(kubeconfig: Path) -> None:
    helm = (
        Path(
            subprocess.run(
                [str(ROOT / "tools" / "helm" / "fetch.sh")], check=True, capture_output=True, text=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        / "helm"
    )
    subprocess.run(
        [
            str(helm),
            "upgrade",
            "--install",
            RELEASE,
            str(ROOT / "charts" / "servedmodel-operator"),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            "--kubeconfig",
            str(kubeconfig),
            "--set",
            "replicaCount=0",
            "--wait",
            "--timeout",
            "120s",
        ],
        check=True,
    )


def service_account_kubeconfig(bin_dir: Path, kubeconfig: Path, target: Path) -> Path:
    """A kubeconfig with a token of the chart's ServiceAccount: the operator gets exactly its rights."""
    token = kubectl(
        bin_dir, kubeconfig, "-n", OPERATOR_NAMESPACE, "create", "token", RELEASE, "--duration=24h"
    ).strip()
    view = json.loads(kubectl(bin_dir, kubeconfig, "config", "view", "--raw", "--minify", "-o", "json"))
    cluster = view["clusters"][0]["cluster"]
    target.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "operator",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [{"name": "operator", "context": {"cluster": "c", "user": "operator"}}],
            }
        )
    )
    return target


def wait_ready(bin_dir: Path, kubeconfig: Path, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = kubectl(
            bin_dir, kubeconfig, "-n", NAMESPACE, "get", "servedmodel", "demo", "-o", "json", check=False
        )
        if out:
            sm = json.loads(out)
            conds = {c["type"]: c for c in (sm.get("status") or {}).get("conditions") or []}
            ready = conds.get("Ready", {})
            if ready.get("status") == "True":
                return sm
            if ready:
                print(
                    f"    Ready={ready['status']} ({ready.get('reason')}): {ready.get('message')}", flush=True
                )
        time.sleep(3)
    raise SystemExit("the demo ServedModel did not become Ready in time; see the operator log above")


def main() -> int:
    bin_dir = build_binaries()
    work = Path(tempfile.mkdtemp(prefix="servedmodel-demo-"))
    cluster = None
    if os.environ.get("KUBECONFIG"):
        kubeconfig = Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
        say(f"using the cluster of KUBECONFIG={kubeconfig}")
    else:
        say(f"starting a local control plane in {work / 'controlplane'}")
        cluster = LocalCluster(workdir=work / "controlplane", bin_dir=bin_dir).start()
        kubeconfig = cluster.kubeconfig
    operator = None
    try:
        say("installing the operator with its Helm chart (CRD, ServiceAccount, RBAC, Deployment)")
        helm_install(kubeconfig)
        for _ in range(60):  # `kubectl wait` fails outright while a new CRD has no conditions yet
            established = kubectl(
                bin_dir,
                kubeconfig,
                "get",
                "crd",
                "servedmodels.servedmodel.io",
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Established')].status}",
                check=False,
            )
            if established == "True":
                break
            time.sleep(1)
        kubectl(bin_dir, kubeconfig, "create", "namespace", NAMESPACE, check=False)

        models = work / "models"
        models.mkdir()
        say(f"publishing a demo Keras model with the exporter into {models}/demo/")
        publish_demo_model(models)
        kubectl(
            bin_dir, kubeconfig, "apply", "-f", "-", input=storage_manifest(models, local=cluster is not None)
        )

        say(f"starting the operator as the chart's ServiceAccount (log: {work / 'operator.log'})")
        sa_config = service_account_kubeconfig(bin_dir, kubeconfig, work / "operator.kubeconfig")
        log = open(work / "operator.log", "wb")
        operator = subprocess.Popen(
            [sys.executable, "-m", "servedmodel_operator", "--liveness="],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(sa_config)},
        )

        say("applying examples/minimal.yaml")
        print(
            kubectl(
                bin_dir, kubeconfig, "-n", NAMESPACE, "apply", "-f", str(ROOT / "examples" / "minimal.yaml")
            ),
            end="",
        )
        sm = wait_ready(bin_dir, kubeconfig)

        say("created by the operator")
        print(
            kubectl(
                bin_dir,
                kubeconfig,
                "-n",
                NAMESPACE,
                "get",
                "servedmodel,deployment,service,configmap,pods",
                "-l",
                "app.kubernetes.io/instance=demo",
                "-o",
                "wide",
            )
        )
        print(kubectl(bin_dir, kubeconfig, "-n", NAMESPACE, "get", "servedmodel", "-o", "wide"))
        say("models.config (TF Serving re-reads it every 10 s)")
        print(
            kubectl(
                bin_dir,
                kubeconfig,
                "-n",
                NAMESPACE,
                "get",
                "configmap",
                "demo-config",
                "-o",
                "jsonpath={.data.models\\.config}",
            )
        )
        say("ServedModel status")
        print(json.dumps(sm["status"], indent=2))
        say("published versions")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "servedmodel_exporter.cli",
                "list",
                "--base-path",
                str(models),
                "--model",
                "demo",
            ],
            check=False,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        if sys.stdin.isatty():
            say(
                f"running; in another shell: export KUBECONFIG={kubeconfig}; "
                f"{bin_dir / 'kubectl'} -n {NAMESPACE} get sm   (Ctrl-C stops everything)"
            )
            try:
                while operator.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        say("demo finished")
        return 0
    finally:
        if operator is not None and operator.poll() is None:
            operator.terminate()
            operator.wait(timeout=20)
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
