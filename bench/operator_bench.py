"""Operator benchmarks on a real local control plane: convergence vs a floor, edit latency, steady state.

Every figure is measured in one run on this machine, against a fresh control plane per measurement:

* convergence N: time from the first ServedModel create to the moment the last of their 3N children
  (ConfigMap, Service, Deployment) exists with the rendered content, seen by a watch. The FLOOR is the same
  creation phase with no operator: the bench itself server-side applies the same rendered objects (the
  operator's own render() and KubeApi.apply), with 4 threads (the operator's default workers), starting each
  ServedModel's children the instant its create returned. Ratio = operator / floor.
* latency N: after convergence, 50 sequential spec edits (a pod annotation) of random ServedModels; the time
  from sending the patch to the watch seeing the Deployment with the new rendered content; p50/p99.
* steady N: a fresh operator process (verbose, short resync) on N converged, unchanged ServedModels: write
  requests it makes per resync (from the API server's audit log), its CPU when idle, its peak RSS, the
  model-server status requests it sends per minute.
* unrelated N: the same steady-state measurement again after 20,000 objects that are not the operator's
  (4 kB ConfigMaps, Deployments, Pods on the kwok node) were added to the cluster: RSS and idle CPU against
  the steady figures just before.
* unreachable N: a fresh operator whose model servers all hang (a loopback socket that never answers, so
  every poll waits for its timeout) on the N converged ServedModels: the latency of 50 spec edits again.

    PYTHONPATH=operator:exporter:tools/controlplane python bench/operator_bench.py all --out bench.json
    python bench/operator_bench.py plot bench-operator.json docs/convergence.png
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import localcluster
import requests
from localcluster import OPERATOR_USER, LocalCluster, free_port
from modelvolume import hostpath_claim
from servedmodel_operator.constants import ANNOTATION_SPEC_HASH
from servedmodel_operator.drift import needs_apply
from servedmodel_operator.kube import KubeApi, load_credentials
from servedmodel_operator.render import render
from servedmodel_operator.spec import parse

ROOT = Path(__file__).resolve().parents[1]
# The test control plane's /24 service range holds 254 Services; N=1000 needs more. Same first address
# (10.96.0.1, in the API server's certificate), a larger range, for the benchmark's clusters only.
localcluster.SERVICE_CIDR = "10.96.0.0/20"
NS = "bench"
WORKERS = 4  # the operator's default SERVEDMODEL_WORKERS
CREATORS = 8  # client threads creating ServedModels
KINDS = {"ConfigMap": "/api/v1", "Service": "/api/v1", "Deployment": "/apis/apps/v1"}
PLURALS = {"ConfigMap": "configmaps", "Service": "services", "Deployment": "deployments"}
SM_PATH = f"/apis/servedmodel.io/v1alpha1/namespaces/{NS}/servedmodels"


# -- a model server stand-in ------------------------------------------------------------------


class ModelServerStub:
    """Answers TF Serving's `GET /v1/models/<model>` for every ServedModel (version 1 AVAILABLE) and
    counts the requests: the operator polls the model servers, and kwok runs no container to ask."""

    BODY = json.dumps(
        {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK"}}]}
    ).encode()

    def __init__(self) -> None:
        import http.server

        stub = self
        self.requests = 0
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                with stub.lock:
                    stub.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(stub.BODY)))
                self.end_headers()
                self.wfile.write(stub.BODY)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/{{namespace}}/{{service}}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return self.requests

    def close(self) -> None:
        self.server.shutdown()


class Blackhole:
    """A model server that never answers: a loopback socket listened on and never accepted, so a poll's
    connection waits in (or, once that is full, is dropped from) the accept queue until it times out."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/{{namespace}}/{{service}}"

    def close(self) -> None:
        self.sock.close()


# -- cluster and processes ---------------------------------------------------------------------


class Bench:
    """One fresh control plane with the CRD, RBAC for the operator's identity, a namespace and a bound PVC."""

    def __init__(self, root: Path, label: str):
        self.cluster = LocalCluster(workdir=root / label)
        self.cluster.start()
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(self.cluster.ca_file)
        self.session.headers["Authorization"] = f"Bearer {self.cluster.admin_token}"
        c = self.cluster
        c.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "servedmodel.io_servedmodels.yaml"))
        wait_established(
            self.session,
            c.server + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/servedmodels.servedmodel.io",
        )
        c.kubectl(
            "create",
            "clusterrolebinding",
            "bench-operator",
            "--clusterrole=cluster-admin",
            f"--user={OPERATOR_USER}",
        )
        c.kubectl("create", "namespace", NS)
        c.kubectl("apply", "-f", "-", input=_pvc_manifest())
        self.operator: subprocess.Popen | None = None
        self.stub = ModelServerStub()
        # Warm-up, untimed: the API server's first custom resource write after the CRD is established is
        # slow (schema and CEL compilation), which would otherwise be charged to whichever run comes first.
        c.kubectl("create", "namespace", "warmup")
        for i in range(3):
            self.session.post(
                self.url(SM_PATH.replace(NS, "warmup")),
                json={**servedmodel(i), "metadata": {"name": f"w{i}", "namespace": "warmup"}},
                timeout=60,
            ).raise_for_status()
        c.kubectl("delete", "namespace", "warmup", "--wait=false")

    def url(self, path: str) -> str:
        return self.cluster.server + path

    def start_operator(self, env: dict[str, str] | None = None, verbose: bool = False) -> subprocess.Popen:
        port = free_port()
        log = open(self.cluster.workdir / "operator.log", "ab")
        args = [sys.executable, "-m", "servedmodel_operator", f"--liveness=http://127.0.0.1:{port}/healthz"]
        self.operator = subprocess.Popen(
            args + (["--verbose"] if verbose else []),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={
                **os.environ,
                "KUBECONFIG": str(self.cluster.operator_kubeconfig),
                "SERVEDMODEL_MODEL_SERVER_URL": self.stub.url,
                **(env or {}),
            },
        )
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.operator.poll() is None, "the operator exited; see operator.log"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    return self.operator
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("the operator did not become live in 120 s")

    def stop_operator(self) -> None:
        if self.operator is not None and self.operator.poll() is None:
            self.operator.terminate()
            try:
                self.operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait()
        self.operator = None

    def close(self) -> None:
        self.stop_operator()
        self.stub.close()
        self.cluster.stop()


def wait_established(session: requests.Session, url: str, timeout: float = 60) -> None:
    """`kubectl wait` fails at once while a new CRD has no conditions yet: poll the condition instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conditions = (session.get(url, timeout=10).json().get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        time.sleep(0.2)
    raise TimeoutError(f"CRD not Established after {timeout} s: {url}")


def _pvc_manifest() -> str:
    return hostpath_claim(NS, "/srv/models/bench", path_type=None)


def servedmodel(i: int) -> dict[str, Any]:
    name = f"m{i:04d}"
    return {
        "apiVersion": "servedmodel.io/v1alpha1",
        "kind": "ServedModel",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"storage": {"persistentVolumeClaim": {"claimName": "models"}, "path": f"vision/{name}"}},
    }


def write_mix(cluster: LocalCluster, since_wall: float, until_wall: float) -> dict[str, int]:
    """The operator identity's write requests in a time window, by verb and resource, from the audit log."""
    mix: dict[str, int] = {}
    for event in cluster.audited_writes(OPERATOR_USER, since_wall):
        when = event["requestReceivedTimestamp"]

        if dt.datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp() > until_wall:
            continue
        ref = event.get("objectRef") or {}
        sub = "/" + ref["subresource"] if ref.get("subresource") else ""
        key = f"{event['verb']} {ref.get('resource')}{sub}"
        mix[key] = mix.get(key, 0) + 1
    return dict(sorted(mix.items()))


def proc_stats(pid: int) -> dict[str, float]:
    """CPU seconds (user+system) and memory of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    mem = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            mem[key] = int(value.split()[0]) / 1024  # MiB
    return {"cpu_s": cpu, "hwm_mib": mem["VmHWM"], "rss_mib": mem["VmRSS"]}


# -- watching the children ---------------------------------------------------------------------


class ChildWatch:
    """Watches ConfigMaps, Services and Deployments in the namespace; remembers, per object, its spec-hash
    annotation, its live body and when it first carried that hash."""

    def __init__(self, bench: Bench):
        self.bench = bench
        self.seen: dict[tuple[str, str], tuple[str, float, dict[str, Any]]] = {}
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in KINDS]
        self._ready = threading.Barrier(len(KINDS) + 1)
        for t in self._threads:
            t.start()
        self._ready.wait(timeout=60)

    def _run(self, kind: str) -> None:
        base = f"{KINDS[kind]}/namespaces/{NS}/{PLURALS[kind]}"
        rv = self.bench.session.get(self.bench.url(base), params={"limit": "1"}, timeout=30).json()[
            "metadata"
        ]["resourceVersion"]
        first = True
        while not self._stop.is_set():
            try:
                with self.bench.session.get(
                    self.bench.url(base),
                    params={
                        "watch": "1",
                        "resourceVersion": rv,
                        "allowWatchBookmarks": "true",
                        "timeoutSeconds": "600",
                    },
                    stream=True,
                    timeout=(10, 700),
                ) as resp:
                    if first:
                        first = False
                        self._ready.wait(timeout=60)
                    for line in resp.iter_lines():
                        if self._stop.is_set():
                            return
                        if not line:
                            continue
                        event = json.loads(line)
                        obj = event["object"]
                        rv = obj["metadata"].get("resourceVersion", rv)
                        if event["type"] in ("ADDED", "MODIFIED"):
                            h = (obj["metadata"].get("annotations") or {}).get(ANNOTATION_SPEC_HASH, "")
                            key = (kind, obj["metadata"]["name"])
                            now = time.monotonic()
                            with self.changed:
                                old = self.seen.get(key)
                                self.seen[key] = (h, old[1] if old and old[0] == h else now, obj)
                                self.changed.notify_all()
                        elif event["type"] == "DELETED":
                            with self.changed:
                                self.seen.pop((kind, obj["metadata"]["name"]), None)
                                self.changed.notify_all()
            except requests.RequestException:
                time.sleep(0.5)

    def wait_for(self, desired: dict[tuple[str, str], dict[str, Any]], timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                done = self.converged_at_locked(desired)
                if done is not None:
                    return done
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [
                        k
                        for k, w in desired.items()
                        if (self.seen.get(k) or ("",))[0]
                        != w["metadata"]["annotations"][ANNOTATION_SPEC_HASH]
                    ]
                    raise TimeoutError(
                        f"{len(missing)} of {len(desired)} objects not converged: {missing[:5]}"
                    )
                self.changed.wait(timeout=min(left, 1.0))

    def converged_at_locked(self, desired: dict[tuple[str, str], dict[str, Any]]) -> float | None:
        latest = 0.0
        for key, want in desired.items():
            got = self.seen.get(key)
            if got is None or got[0] != want["metadata"]["annotations"][ANNOTATION_SPEC_HASH]:
                return None
            latest = max(latest, got[1])
        return latest

    def check_content(self, desired: dict[tuple[str, str], dict[str, Any]]) -> int:
        """Objects whose live body differs from the rendered one in a field we render (must be 0)."""
        with self.changed:
            return sum(needs_apply(want, self.seen[key][2]) for key, want in desired.items())

    def stop(self) -> None:
        self._stop.set()


def desired_children(bodies: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for body in bodies:
        for obj in render(parse(body)):
            out[(obj["kind"], obj["metadata"]["name"])] = obj
    return out


# -- creating ServedModels ---------------------------------------------------------------------


def create_servedmodels(bench: Bench, n: int, on_created=None) -> list[dict[str, Any]]:
    """POST n ServedModels from CREATORS threads; returns the created bodies (with uid and defaults)."""
    created: list[dict[str, Any]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        resp = bench.session.post(bench.url(SM_PATH), json=servedmodel(i), timeout=60)
        resp.raise_for_status()
        body = resp.json()
        with lock:
            created.append(body)
        if on_created is not None:
            on_created(body)

    with ThreadPoolExecutor(CREATORS) as pool:
        list(pool.map(one, range(n)))
    return created


# -- measurements ------------------------------------------------------------------------------


def measure_floor(root: Path, n: int) -> dict[str, Any]:
    bench = Bench(root, f"floor-{n}")
    try:
        watch = ChildWatch(bench)
        api = KubeApi(load_credentials(str(bench.cluster.operator_kubeconfig)))
        work: queue.Queue = queue.Queue()

        def worker() -> None:
            while (body := work.get()) is not None:
                for obj in render(parse(body)):
                    api.apply(obj)

        workers = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
        for w in workers:
            w.start()
        t0, wall0 = time.monotonic(), time.time()
        bodies = create_servedmodels(bench, n, on_created=work.put)
        created_s = time.monotonic() - t0
        for _ in workers:
            work.put(None)
        desired = desired_children(bodies)
        done = watch.wait_for(desired, timeout=600)
        bad = watch.check_content(desired)
        watch.stop()
        mix = write_mix(bench.cluster, wall0, wall0 + done - t0 + 1)
        return {
            "n": n,
            "seconds": done - t0,
            "create_phase_s": created_s,
            "content_mismatches": bad,
            "writes_to_converge": mix,
        }
    finally:
        bench.close()


def measure_operator(
    root: Path,
    n: int,
    latency_samples: int,
    steady: bool,
    steady_window: float = 60.0,
    unrelated: int = 0,
    unreachable: bool = False,
) -> dict[str, Any]:
    bench = Bench(root, f"operator-{n}")
    try:
        watch = ChildWatch(bench)
        op = bench.start_operator()
        cpu0 = proc_stats(op.pid)["cpu_s"]
        t0, wall0 = time.monotonic(), time.time()
        bodies = create_servedmodels(bench, n)
        created_s = time.monotonic() - t0
        desired = desired_children(bodies)
        done = watch.wait_for(desired, timeout=1200)
        stats = proc_stats(op.pid)
        result: dict[str, Any] = {
            "n": n,
            "seconds": done - t0,
            "create_phase_s": created_s,
            "content_mismatches": watch.check_content(desired),
            "operator_cpu_s_to_converge": stats["cpu_s"] - cpu0,
            "writes_to_converge": write_mix(bench.cluster, wall0, wall0 + done - t0 + 1),
        }
        if latency_samples:
            result["all_ready_after_s"] = wait_ready(bench, n, timeout=300)
            time.sleep(5)  # let the last status writes land
            result["latency"] = measure_latency(bench, watch, bodies, latency_samples)
        result["operator_peak_rss_mib"] = proc_stats(op.pid)["hwm_mib"]
        bench.stop_operator()
        if unreachable:
            result["unreachable"] = measure_unreachable(bench, watch, bodies, n, latency_samples or 50)
        if steady:
            result["steady"] = measure_steady(bench, n, window=steady_window)
            if unrelated:
                result["unrelated_objects"] = create_unrelated(bench, unrelated)
                result["steady_with_unrelated"] = measure_steady(bench, n, window=steady_window)
        watch.stop()
        return result
    finally:
        bench.close()


def wait_ready(bench: Bench, n: int, timeout: float) -> float | None:
    """Until every ServedModel says Ready=True (pods scheduled and marked ready by kwok)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        items = bench.session.get(bench.url(SM_PATH), timeout=60).json()["items"]
        ready = sum(
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (i.get("status") or {}).get("conditions", [])
            )
            for i in items
        )
        if ready == n:
            return time.monotonic() - t0
        time.sleep(2)
    print(f"only {ready} of {n} ServedModels Ready after {timeout} s; measuring anyway", flush=True)
    return None


def measure_latency(
    bench: Bench, watch: ChildWatch, bodies: list[dict[str, Any]], samples: int, tag: str = ""
) -> dict:
    rng = random.Random(42)
    times = []
    for i in range(samples):
        name = rng.choice(bodies)["metadata"]["name"]
        patch = {"spec": {"podAnnotations": {"bench.servedmodel.io/edit": f"{tag}{i}"}}}
        sent = time.monotonic()
        resp = bench.session.patch(
            bench.url(f"{SM_PATH}/{name}"),
            data=json.dumps(patch),
            timeout=30,
            headers={"Content-Type": "application/merge-patch+json"},
        )
        resp.raise_for_status()
        desired = {k: v for k, v in desired_children([resp.json()]).items() if k[0] == "Deployment"}
        try:
            done = watch.wait_for(desired, timeout=120)
            times.append(max(done, sent) - sent)
        except TimeoutError:
            times.append(float("inf"))  # not applied within 120 s: reported as a timeout
        time.sleep(0.2)
    times.sort()
    return {
        "samples": samples,
        "timeouts_over_120s": sum(t == float("inf") for t in times),
        "p50_s": statistics.median(times),
        "p99_s": times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))],
        "max_s": times[-1],
        "all_s": [t if t != float("inf") else None for t in times],
    }


def measure_steady(bench: Bench, n: int, resync: int = 15, window: float = 60.0) -> dict[str, Any]:
    """A fresh operator (verbose, resync every `resync` s) on n unchanged, converged ServedModels."""
    log = bench.cluster.workdir / "operator.log"
    op = bench.start_operator(env={"SERVEDMODEL_RESYNC_SECONDS": str(resync)}, verbose=True)
    started = time.time()
    # The start-up pass (kopf lists everything, every ServedModel is reconciled once) must be over first.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if text.count(": up to date") + text.count("waits for the model server") >= n:
            break
        time.sleep(1)
    startup_writes = len(bench.cluster.audited_writes(OPERATOR_USER, started))
    startup_mix = write_mix(bench.cluster, started, time.time())
    # The operator polls a model server every 5 s for 120 s after it first sees a ServedModel (its
    # "just changed" window), then every 60 s +-20%: idle starts after that window.
    time.sleep(max(3.0, started + 125 - time.time()))
    since = time.time()
    log_before = len(log.read_text(errors="replace"))
    s0, polls0 = proc_stats(op.pid), bench.stub.count()
    time.sleep(window)
    s1, polls = proc_stats(op.pid), bench.stub.count() - polls0
    writes = bench.cluster.audited_writes(OPERATOR_USER, since)
    passes = log.read_text(errors="replace")[log_before:].count(": up to date") / n
    return {
        "n": n,
        "resync_seconds": resync,
        "window_s": window,
        "resync_passes": round(passes, 2),
        "writes_in_window": len(writes),
        "writes_per_resync": len(writes) / passes if passes else None,
        "writes_at_startup_pass": startup_writes,
        "writes_at_startup_pass_by_kind": startup_mix,
        "idle_cpu_percent": 100 * (s1["cpu_s"] - s0["cpu_s"]) / window,
        "peak_rss_mib": s1["hwm_mib"],
        "rss_mib": s1["rss_mib"],
        "model_server_status_requests_per_min": 60 * polls / window,
    }


def wait_startup_pass(bench: Bench, n: int, since_chars: int, timeout: float = 300) -> None:
    """Until a fresh verbose operator has logged its first pass over the n ServedModels."""
    log = bench.cluster.workdir / "operator.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")[since_chars:]
        if text.count(": up to date") + text.count("waits for the model server") >= n:
            return
        time.sleep(1)


def measure_unreachable(
    bench: Bench, watch: ChildWatch, bodies: list[dict[str, Any]], n: int, samples: int
) -> dict[str, Any]:
    """Spec edits while every model server hangs: a reconcile must not wait for any of them."""
    hole = Blackhole()
    try:
        log = bench.cluster.workdir / "operator.log"
        before = len(log.read_text(errors="replace"))
        op = bench.start_operator(env={"SERVEDMODEL_MODEL_SERVER_URL": hole.url}, verbose=True)
        wait_startup_pass(bench, n, before)
        result = {"latency": measure_latency(bench, watch, bodies, samples, tag="unreachable-")}
        items = bench.session.get(bench.url(SM_PATH), timeout=60).json()["items"]
        reasons: dict[str, int] = {}
        for item in items:
            for c in (item.get("status") or {}).get("conditions") or []:
                if c["type"] == "Ready":
                    key = f"{c['status']}/{c['reason']}"
                    reasons[key] = reasons.get(key, 0) + 1
        result["ready_at_end"] = dict(sorted(reasons.items()))
        result["operator_peak_rss_mib"] = proc_stats(op.pid)["hwm_mib"]
        bench.stop_operator()
        return result
    finally:
        hole.close()


UNRELATED_NS = "unrelated"


def create_unrelated(bench: Bench, total: int) -> dict[str, Any]:
    """Objects that are none of the operator's business: 60 % 4 kB ConfigMaps, 20 % Deployments (no
    replicas), 20 % Pods bound to the kwok node, in a namespace of their own."""
    bench.cluster.kubectl("create", "namespace", UNRELATED_NS)
    n_cm, n_dep = total * 6 // 10, total * 2 // 10
    n_pod = total - n_cm - n_dep
    payload = "x" * 4096
    labels = {"app": "unrelated"}

    def body(i: int) -> tuple[str, dict[str, Any]]:
        meta = {"name": f"u{i:05d}", "namespace": UNRELATED_NS, "labels": labels}
        if i < n_cm:
            return "/api/v1", {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": meta,
                "data": {"d": payload},
            }
        template = {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "c", "image": "registry.invalid/unrelated:1"}]},
        }
        if i < n_cm + n_dep:
            spec = {"replicas": 0, "selector": {"matchLabels": labels}, "template": template}
            return "/apis/apps/v1", {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": meta,
                "spec": spec,
            }
        spec = {**template["spec"], "nodeName": localcluster.NODE_NAME}
        return "/api/v1", {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}

    def create(i: int) -> None:
        prefix, obj = body(i)
        plural = {"ConfigMap": "configmaps", "Deployment": "deployments", "Pod": "pods"}[obj["kind"]]
        url = bench.url(f"{prefix}/namespaces/{UNRELATED_NS}/{plural}")
        for attempt in range(5):
            resp = bench.session.post(url, json=obj, timeout=60)
            if resp.status_code < 300 or resp.status_code == 409:
                return
            time.sleep(0.5 * (attempt + 1))
        resp.raise_for_status()

    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(total)))
    return {"configmaps": n_cm, "deployments": n_dep, "pods": n_pod, "created_in_s": time.monotonic() - t0}


# -- commands ----------------------------------------------------------------------------------


def run_steady(args: argparse.Namespace) -> dict[str, Any]:
    """Steady state alone: converge N with one operator, then measure a fresh one on the unchanged set."""
    root = Path(tempfile.mkdtemp(prefix="smbench-"))
    bench = Bench(root, f"steady-{args.n}")
    try:
        watch = ChildWatch(bench)
        bench.start_operator()
        desired = desired_children(create_servedmodels(bench, args.n))
        watch.wait_for(desired, timeout=1200)
        wait_ready(bench, args.n, timeout=300)
        time.sleep(5)
        bench.stop_operator()
        watch.stop()
        result = {"machine": machine(), "steady": measure_steady(bench, args.n, window=args.steady_window)}
        print(json.dumps(result["steady"]), flush=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        return result
    finally:
        bench.close()
        shutil.rmtree(root, ignore_errors=True)


def machine() -> dict[str, Any]:
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpus": os.cpu_count(),
        "mem_gib": round(int(mem) / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="smbench-"))
    out: dict[str, Any] = {"machine": machine(), "convergence": []}
    failed = False
    try:
        for n in args.n:
            floor = measure_floor(root, n)
            print(f"floor    N={n:5d}: {floor['seconds']:.2f} s", flush=True)
            row: dict[str, Any] = {"n": n, "floor": floor}
            out["convergence"].append(row)
            Path(args.out).write_text(json.dumps(out, indent=2))
            lat = args.latency_samples if n in args.latency_at else 0
            oper = measure_operator(
                root,
                n,
                lat,
                steady=n in args.steady_at,
                steady_window=args.steady_window,
                unrelated=args.unrelated if n in args.steady_at else 0,
                unreachable=n in args.unreachable_at,
            )
            row.update(operator=oper, ratio=oper["seconds"] / floor["seconds"])
            Path(args.out).write_text(json.dumps(out, indent=2))
            print(f"operator N={n:5d}: {oper['seconds']:.2f} s  ratio {row['ratio']:.2f}", flush=True)
            if "latency" in oper:
                lat_s = oper["latency"]
                print(f"latency  N={n:5d}: p50 {lat_s['p50_s']:.3f} s  p99 {lat_s['p99_s']:.3f} s")
            if "unreachable" in oper:
                lat_u = oper["unreachable"]["latency"]
                print(
                    f"unreachable N={n:5d}: p50 {lat_u['p50_s']:.3f} s  p99 {lat_u['p99_s']:.3f} s  "
                    f"Ready {oper['unreachable']['ready_at_end']}",
                    flush=True,
                )
            if "steady" in oper:
                print(f"steady   N={n:5d}: {json.dumps(oper['steady'])}", flush=True)
            if "steady_with_unrelated" in oper:
                print(f"unrelated N={n:5d}: {json.dumps(oper['steady_with_unrelated'])}", flush=True)
    except BaseException:
        failed = True
        print(f"failed; control plane folders and logs kept in {root}", flush=True)
        raise
    finally:
        if not (args.keep or failed):
            shutil.rmtree(root, ignore_errors=True)
    return out


def plot(data_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(data_path.read_text())
    rows = data["convergence"]
    ns = [r["n"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot(ns, [r["operator"]["seconds"] for r in rows], "o-", label="operator (4 workers)")
    ax.plot(
        ns, [r["floor"]["seconds"] for r in rows], "s--", label="floor: direct server-side apply, 4 threads"
    )
    for r in rows:
        ax.annotate(
            f"{r['ratio']:.2f}x",
            (r["n"], r["operator"]["seconds"]),
            textcoords="offset points",
            xytext=(-10, 8),
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ServedModels created at once (N)")
    ax.set_ylabel("seconds until all 3N children are rendered")
    m = data["machine"]
    ax.set_title(
        f"Convergence vs N ({m['cpus']} cores, {m['mem_gib']} GiB, local control plane)", fontsize=10
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (and SIGINT in a background job, where it is ignored otherwise) must run the `finally`
    # blocks that stop the control planes and operator processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("all", help="convergence (+ floor) for each N, latency and steady state where asked")
    run.add_argument("--n", type=int, nargs="+", default=[10, 100, 1000])
    run.add_argument("--latency-at", type=int, nargs="*", default=[100, 1000])
    run.add_argument("--latency-samples", type=int, default=50)
    run.add_argument("--steady-at", type=int, nargs="*", default=[1000])
    run.add_argument("--steady-window", type=float, default=60.0, help="seconds of idle measured")
    run.add_argument(
        "--unrelated",
        type=int,
        default=20000,
        help="objects that are not the operator's added before a second steady measurement (0: none)",
    )
    run.add_argument(
        "--unreachable-at",
        type=int,
        nargs="*",
        default=[1000],
        help="N at which spec-edit latency is measured again with every model server hanging",
    )
    run.add_argument("--out", default="bench-operator.json")
    run.add_argument("--keep", action="store_true", help="keep the control planes' folders (logs)")
    sd = sub.add_parser("steady", help="steady state only, at one N")
    sd.add_argument("--n", type=int, default=1000)
    sd.add_argument("--steady-window", type=float, default=60.0)
    sd.add_argument("--out", default="bench-steady.json")
    pl = sub.add_parser("plot", help="plot convergence time against N from a results file")
    pl.add_argument("results", type=Path)
    pl.add_argument("png", type=Path)
    args = parser.parse_args(argv)
    if args.command == "all":
        run_all(args)
    elif args.command == "steady":
        run_steady(args)
    else:
        plot(args.results, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
