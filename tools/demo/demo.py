"""`make demo`: from a Keras model to answers on `:predict`, on a local cluster with a real node.

1. A local cluster: etcd, kube-apiserver, controller-manager, scheduler (tools/controlplane) and one real
   node (containerd, kubelet, kube-proxy, CoreDNS) in its own network namespace.
2. Our images built from our Dockerfiles (tools/images, cached by their inputs): the operator, the
   exporter and the TF Serving stand-in, imported into the node's runtime.
3. The operator installed with its Helm chart, running in a pod on the real node.
4. A small Keras model trained here and put on the model volume; a ServedModel whose `spec.export` makes
   the operator run the exporter image as a Job that publishes it as version 1; the model server loads it
   and its kubelet-executed probes pass.
5. `{"instances": ...}` sent to `:predict` through the model's Service, printed beside Keras' own output.
6. A second model published as version 2 (an edit of `spec.export`) and served by the same pods, without
   a restart.
7. The same two models from S3-compatible object storage: a real S3 server (SeaweedFS) on the node's
   host-side address, `servedmodel-export publish --to s3://...` from here, a second ServedModel whose
   pods sync the bucket; version 2 published into the bucket is served by the same pod, without a restart.
8. The same call by name with the `servedmodel` client.

The model server here is the TF Serving stand-in (tools/tfserving_double): `tensorflow/serving` cannot be
fetched on machines without access to its registry. A real cluster runs the default `tensorflow/serving`
image with the same pod spec; only `spec.image` differs.

The demo always starts its own cluster (it needs a node whose runtime holds the images it built); it
needs root for the node's network namespace and containerd. On a terminal it keeps everything running until
Ctrl-C, so you can look around with kubectl.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tools" / "controlplane"), str(ROOT / "tools" / "images")]

import images  # noqa: E402
from localcluster import LocalCluster, build_binaries  # noqa: E402
from modelvolume import hostpath_claim  # noqa: E402
from objectstore import ObjectStore  # noqa: E402

NAMESPACE = "servedmodel-demo"
OPERATOR_NAMESPACE = "servedmodel-system"
RELEASE = "servedmodel-operator"
EXPORTER_UID = 10001  # the exporter image's user: it writes the model volume
SAMPLES = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0], [-3.0, 1.5, 2.5, -0.5]]
S3_NAME = "demo-s3"  # the ServedModel (and model) served from the bucket
S3_BUCKET, S3_PREFIX = "models", "demo"
STARTED = time.monotonic()


def say(msg: str) -> None:
    stamp = f"[{time.monotonic() - STARTED:5.0f}s]"
    print(f"\033[1m==> {msg}\033[0m {stamp}" if sys.stdout.isatty() else f"==> {msg} {stamp}", flush=True)


class Demo:
    def __init__(self, work: Path):
        self.work = work
        self.bin_dir = build_binaries()
        self.cluster: LocalCluster | None = None
        self.node = None
        self.timings: dict[str, float] = {}
        self.store: ObjectStore | None = None

    # -- tools -------------------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        assert self.cluster is not None
        proc = self.cluster.kubectl(*args, input=input, check=False)
        if check and proc.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def get(self, *args: str) -> dict:
        out = self.kubectl("get", *args, "-o", "json", check=False)
        return json.loads(out) if out else {}

    def wait(self, what: str, fn, timeout: float = 300, interval: float = 1.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = fn()
            if value:
                return value
            time.sleep(interval)
        raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")

    # -- steps -------------------------------------------------------------------------------------

    def start_cluster(self) -> None:
        say(f"starting a local cluster with a real node in {self.work / 'cluster'}")
        self.cluster = LocalCluster(workdir=self.work / "cluster", bin_dir=self.bin_dir, with_real_node=True)
        self.cluster.start()
        self.node = self.cluster.real_node
        print(self.kubectl("get", "nodes", "-o", "wide"), end="")

    def build_images(self) -> dict[str, str]:
        say(
            "building our images from their Dockerfiles (cached by their inputs; a first build takes minutes)"
        )
        refs = {}
        for name in ("operator", "exporter", "tfserving-double"):
            started = time.monotonic()
            built = images.build(name)
            refs[name] = self.node.import_image(built.archive, built.ref)
            print(f"    {name:17} {refs[name]}  ({time.monotonic() - started:.0f}s)", flush=True)
        return refs

    def install_operator(self, image: str) -> None:
        say("installing the operator with its Helm chart; it runs in a pod on the real node")
        repository, tag = image.rsplit(":", 1)
        placement = self.node.pod_placement()
        values = self.work / "values.yaml"
        values.write_text(
            json.dumps({"image": {"repository": repository, "tag": tag, "pullPolicy": "Never"}, **placement})
        )
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
        started = time.monotonic()
        assert self.cluster is not None
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
                str(self.cluster.kubeconfig),
                "-f",
                str(values),
                "--wait",
                "--timeout",
                "300s",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.timings["operator pod Ready after helm install"] = time.monotonic() - started
        print(self.kubectl("-n", OPERATOR_NAMESPACE, "get", "pods", "-o", "wide"), end="")

    def prepare_volume(self) -> Path:
        """A model volume: a folder of this machine (the real node's), as a PersistentVolume and its claim."""
        models = self.work / "models"
        (models / "incoming").mkdir(parents=True)
        os.chown(models, EXPORTER_UID, EXPORTER_UID)  # the export Job publishes here as its own user
        models.chmod(0o755)
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": NAMESPACE,
                        "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                    },
                }
            ),
        )
        self.kubectl("apply", "-f", "-", input=hostpath_claim(NAMESPACE, models))
        return models

    def train(self, target: Path, scale: float) -> list[list[float]]:
        """A small Keras regression model (y = scale * sum(x) + noise), saved to `target`; returns its own
        predictions for SAMPLES, to compare with what the server answers."""
        script = f"""
import json, sys, numpy as np, keras
keras.utils.set_random_seed(7)
x = np.random.default_rng(7).normal(size=(512, 4)).astype("float32")
y = {scale} * x.sum(axis=1, keepdims=True)
layers = [keras.Input((4,), name="x"), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)]
m = keras.Sequential(layers)
m.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
m.fit(x, y, epochs=40, batch_size=64, verbose=0)
m.save({str(target)!r})
print(json.dumps(m.predict(np.array({SAMPLES!r}, dtype="float32"), verbose=0).tolist()))
"""
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        out = subprocess.run(
            [sys.executable, "-c", script], check=True, capture_output=True, text=True, env=env
        )
        target.chmod(0o644)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def servedmodel(self, refs: dict[str, str], source: str | None, name: str = "demo", **spec) -> dict:
        """The demo's ServedModel: on the model volume, published by `spec.export` from `source`, unless
        `spec` says otherwise (storage.s3)."""
        placement = self.node.pod_placement()
        body = {
            # The stand-in, for machines that cannot fetch tensorflow/serving: the only change to the pod.
            "image": refs["tfserving-double"],
            "storage": {"persistentVolumeClaim": {"claimName": "models"}, "path": name},
            "versionPolicy": {"latest": {"numVersions": 1}},
            "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1500Mi"}},
            **placement,
        }
        if source is not None:
            body["export"] = {"source": {"path": source}, "image": refs["exporter"], "warmupRequests": 5}
        body.update(spec)
        return {
            "apiVersion": "servedmodel.io/v1alpha1",
            "kind": "ServedModel",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": body,
        }

    def wait_served(self, version: int, name: str = "demo", export_job: bool = True) -> dict:
        def served():
            sm = self.get("servedmodel", name, "-n", NAMESPACE)
            status = sm.get("status") or {}
            conds = {c["type"]: c for c in status.get("conditions") or []}
            versions = {v.get("version"): v.get("state") for v in status.get("versions") or []}
            ready = conds.get("Ready", {})
            export = (status.get("export") or {}).get("phase") if export_job else "Succeeded"
            line = f"Ready={ready.get('status')} ({ready.get('reason')})"
            line += f" export={export}" if export_job else ""
            if ready and line != getattr(self, "_last", None):  # nothing to say before a first status
                print(f"    {line}: {ready.get('message', '')}", flush=True)
                self._last = line
            done = ready.get("status") == "True" and export == "Succeeded"
            return sm if done and versions.get(version) == "AVAILABLE" else None

        return self.wait(f"version {version} served", served, timeout=600, interval=2)

    def predict(self, version: int | None = None, name: str = "demo") -> list[list[float]]:
        """POST {"instances": ...} to :predict through the Service (its ClusterIP, via kube-proxy), from
        the node's network namespace: the only place on this machine that routes cluster addresses."""
        svc = self.get("service", name, "-n", NAMESPACE)
        ip = svc["spec"]["clusterIP"]
        path = f"/v1/models/{name}{f'/versions/{version}' if version else ''}:predict"
        script = (
            "import json, sys, urllib.request as u\n"
            f"body = json.dumps({{'instances': {SAMPLES!r}}}).encode()\n"
            "headers = {'Content-Type': 'application/json'}\n"
            f"req = u.Request('http://{ip}:8501{path}', data=body, headers=headers)\n"
            "print(u.urlopen(req, timeout=10).read().decode())\n"
        )
        proc = self.node.run_in_netns([sys.executable, "-c", script], timeout=30)
        if proc.returncode != 0:
            raise SystemExit(f"predict through the Service failed: {proc.stderr.strip()}")
        return json.loads(proc.stdout)["predictions"]

    def show(self, keras_out: list[list[float]], served: list[list[float]]) -> None:
        print(f"    {'instance':28} {'Keras':>10} {'served':>10}")
        for row, k, s in zip(SAMPLES, keras_out, served, strict=True):
            print(f"    {json.dumps(row):28} {k[0]:10.4f} {s[0]:10.4f}")
        worst = max(abs(k[0] - s[0]) for k, s in zip(keras_out, served, strict=True))
        print(f"    largest difference: {worst:.2e}")
        if worst > 1e-4:
            raise SystemExit("the served model does not answer as the Keras model does")

    def client(self, *args: str) -> None:
        """`servedmodel ARGS -n servedmodel-demo`, as a user runs it with their kubeconfig."""
        assert self.cluster is not None
        # The console script `servedmodel` is this entry point; the demo runs from the clone, not installed.
        entry = "import sys; from servedmodel_operator.client.cli import main; sys.exit(main(sys.argv[1:]))"
        cmd = [sys.executable, "-c", entry, *args, "-n", NAMESPACE]
        print(f"    $ servedmodel {' '.join(args)} -n {NAMESPACE}", flush=True)
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        print("".join(f"      {line}\n" for line in (proc.stdout + proc.stderr).splitlines()), end="")
        if proc.returncode != 0:
            raise SystemExit(f"servedmodel {' '.join(args)} exited {proc.returncode}")

    def server_pods(self, name: str = "demo") -> dict[str, int]:
        """{pod name: restarts of all its containers (a sync sidecar, an init container, included)}."""
        pods = self.get(
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            f"app.kubernetes.io/instance={name},app.kubernetes.io/component=model-server",
        )
        return {
            p["metadata"]["name"]: sum(
                c["restartCount"]
                for c in (p["status"].get("containerStatuses") or [])
                + (p["status"].get("initContainerStatuses") or [])
            )
            for p in pods.get("items", [])
        }

    # -- S3 ----------------------------------------------------------------------------------------

    def start_object_store(self) -> ObjectStore:
        """SeaweedFS's S3 API on the real node's host-side address (pods reach it as they reach the API
        server; never a wildcard or the machine's own interface); an admin identity for publishing here,
        a read-only one for the pods."""
        admin = ("demo-admin", secrets.token_hex(16))
        reader = ("demo-reader", secrets.token_hex(16))
        self.store = ObjectStore(
            self.node.slot.host_ip, self.work / "objectstore", credentials=admin, read_only_credentials=reader
        ).start()
        self.store.create_bucket(S3_BUCKET)
        print(
            f"    {self.store.endpoint} (started in {self.store.startup_seconds:.1f}s), bucket {S3_BUCKET}",
            flush=True,
        )
        return self.store

    def publish_s3(self, source: Path) -> tuple[int, float]:
        """`servedmodel-export publish SOURCE --to s3://models/demo` as a user runs it with the admin
        key; (the version published, the monotonic time its "published" line appeared, i.e. once the
        commit marker was written)."""
        assert self.store is not None
        to = f"s3://{S3_BUCKET}/{S3_PREFIX}"
        args = ["publish", str(source), "--to", to, "--model", S3_NAME, "--endpoint-url", self.store.endpoint]
        print(
            f"    $ servedmodel-export publish {source.name} --to {to} --model {S3_NAME} --quiet", flush=True
        )
        env = {**os.environ, **self.store.env(), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "servedmodel_exporter.cli", *args, "--quiet"],
                stdout=subprocess.PIPE, stderr=err, text=True, env=env,
            )  # fmt: skip
            published = None
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("published ") and published is None:
                    published = time.monotonic(), line.strip()
                print(f"      {line.rstrip()}", flush=True)
            if proc.wait() != 0 or published is None:
                err.seek(0)
                raise SystemExit(f"servedmodel-export publish exited {proc.returncode}: {err.read()[-2000:]}")
        at, line = published
        return int(line.split(" version ")[1].split()[0]), at

    def watch_available(self, name: str, version: int) -> subprocess.Popen:
        """A watcher in the node's network namespace that asks the model server through the Service every
        50 ms and prints the monotonic clock (the machine's, shared) once `version` is AVAILABLE."""
        ip = self.get("service", name, "-n", NAMESPACE)["spec"]["clusterIP"]
        script = (
            "import json, sys, time, urllib.request as u\n"
            "deadline = time.monotonic() + 300\n"
            "print('watching', flush=True)\n"
            "while time.monotonic() < deadline:\n"
            "    try:\n"
            f"        st = json.load(u.urlopen('http://{ip}:8501/v1/models/{name}', timeout=2))\n"
            "    except (OSError, ValueError):\n"
            "        st = {}\n"
            "    for v in st.get('model_version_status', []):\n"
            f"        if v['version'] == '{version}' and v['state'] == 'AVAILABLE':\n"
            "            print(time.monotonic(), flush=True)\n"
            "            sys.exit(0)\n"
            "    time.sleep(0.05)\n"
            "sys.exit(1)\n"
        )
        proc = subprocess.Popen(
            self.node.netns_argv([sys.executable, "-c", script]), stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "watching":
            proc.kill()
            raise SystemExit("the watcher in the node's network namespace did not start")
        return proc

    def serve_from_s3(self, refs: dict[str, str], sources: list[Path], keras_out: list[list]) -> None:
        say("models in S3: a SeaweedFS server on the node's host-side address, a bucket, version 1 published")
        store = self.start_object_store()
        self.publish_s3(sources[0])
        assert store.read_only_credentials is not None
        key, secret = store.read_only_credentials  # the pods' identity: list and read only
        secret_body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "models-s3", "namespace": NAMESPACE},
            "stringData": {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret},
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(secret_body))
        s3 = {
            "bucket": S3_BUCKET,
            "prefix": S3_PREFIX,
            "endpoint": store.endpoint,
            "credentials": {"secretName": "models-s3"},
            "sizeLimit": "1Gi",
            "syncIntervalSeconds": 1,
            "syncImage": refs["exporter"],
        }
        spec = {"storage": {"s3": s3}, "server": {"fileSystemPollSeconds": 1}}
        print(
            f"    a ServedModel {S3_NAME} with spec.storage.s3 (read-only key in Secret models-s3)",
            flush=True,
        )
        started = time.monotonic()
        self.kubectl("apply", "-f", "-", input=json.dumps(self.servedmodel(refs, None, S3_NAME, **spec)))
        self.wait_served(1, S3_NAME, export_job=False)
        self.timings["S3 ServedModel applied -> synced, loaded, Ready"] = time.monotonic() - started
        self.show(keras_out[0], self.predict(name=S3_NAME))
        pods_before = self.server_pods(S3_NAME)

        watcher = self.watch_available(S3_NAME, 2)
        try:
            _, uploaded = self.publish_s3(sources[1])
            assert watcher.stdout is not None
            seen = watcher.stdout.readline().strip()
            if watcher.wait(timeout=30) != 0 or not seen:
                raise SystemExit(f"version 2 of {S3_NAME} was not AVAILABLE within 300s of its upload")
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
        took = float(seen) - uploaded
        self.timings["S3 upload complete -> version 2 served"] = took
        print(f"    version 2 AVAILABLE {took:.2f}s after its upload completed (commit marker written)")
        self.show(keras_out[1], self.predict(name=S3_NAME))
        pods_after = self.server_pods(S3_NAME)
        print(f"    model-server pods before {pods_before}, after {pods_after} (name: restarts)")
        if pods_after != pods_before or any(pods_after.values()):
            raise SystemExit(
                "the S3 model-server pod changed or restarted: version 2 should have been synced live"
            )

    def run(self) -> None:
        self.start_cluster()
        refs = self.build_images()
        self.install_operator(refs["operator"])
        models = self.prepare_volume()

        say("training a small Keras model (version 1) and putting it on the model volume")
        keras_v1 = self.train(models / "incoming" / "demo-v1.keras", scale=2.0)
        say("applying a ServedModel whose spec.export publishes it (an export Job runs the exporter image)")
        started = time.monotonic()
        self.kubectl("apply", "-f", "-", input=json.dumps(self.servedmodel(refs, "incoming/demo-v1.keras")))
        sm = self.wait_served(1)
        self.timings["ServedModel applied -> exported, loaded, Ready"] = time.monotonic() - started
        print(self.kubectl("-n", NAMESPACE, "get", "servedmodel,jobs,pods,services", "-o", "wide"), end="")
        print(f"    status.export: {json.dumps(sm['status'].get('export'))}")

        say('POST {"instances": ...} to /v1/models/demo:predict through the Service')
        self.show(keras_v1, self.predict())
        pods_before = self.server_pods()

        say("training version 2 (a different model) and editing spec.export to publish it")
        keras_v2 = self.train(models / "incoming" / "demo-v2.keras", scale=-1.0)
        started = time.monotonic()
        self.kubectl("apply", "-f", "-", input=json.dumps(self.servedmodel(refs, "incoming/demo-v2.keras")))
        self.wait_served(2)
        self.timings["spec.export edited -> version 2 served"] = time.monotonic() - started
        self.show(keras_v2, self.predict())
        pods_after = self.server_pods()
        print(f"    model-server pods before {pods_before}, after {pods_after} (name: restarts)")
        if pods_after != pods_before:
            raise SystemExit(
                "the model-server pods changed: version 2 should have been loaded without a restart"
            )
        print(f"    published: {sorted(p.name for p in (models / 'demo').iterdir() if p.name.isdigit())}")

        incoming = models / "incoming"
        self.serve_from_s3(
            refs, [incoming / "demo-v1.keras", incoming / "demo-v2.keras"], [keras_v1, keras_v2]
        )

        say("the same call by name with the servedmodel client (through the API server's service proxy)")
        self.client("status", "demo")
        self.client("predict", "demo", "--instances", json.dumps(SAMPLES[:1]))
        self.client("predict", "demo", "--version", "2", "--instances", json.dumps(SAMPLES[:1]))

        say("timings")
        for what, seconds in self.timings.items():
            print(f"    {what:48} {seconds:6.1f}s")
        print(f"    {'whole demo':48} {time.monotonic() - STARTED:6.1f}s")

    def stop(self) -> None:
        """The object store (kept until here so the S3 ServedModel stays healthy while you look around),
        then the cluster; on failure too."""
        if self.store is not None:
            self.store.stop()
        if self.cluster is not None:
            self.cluster.stop()


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root: the real node runs containerd and a network namespace", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="servedmodel-demo-"))
    demo = Demo(work)
    try:
        demo.run()
        if sys.stdin.isatty() and demo.cluster is not None:
            say(
                f"running; in another shell: export KUBECONFIG={demo.cluster.kubeconfig}; "
                f"{demo.bin_dir / 'kubectl'} -n {NAMESPACE} get sm,pods -o wide   (Ctrl-C stops everything)"
            )
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        say("demo finished")
        return 0
    finally:
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
