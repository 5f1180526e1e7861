"""Helpers of the serving tests on the real node: ServedModels placed on the node, waiting on what the
kubelet and the operator report, and clients run in the node's network namespace."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import kubehelpers
import numpy as np
from kubehelpers import Check, Kube, OperatorProcess, condition, eventually
from localcluster import LocalCluster
from realnode import RealNode, with_resolv_conf, write_cluster_resolv_conf

NAMESPACE = "serving"  # ServedModels of the operator in the node's network
LAPTOP_NAMESPACE = "serving-laptop"  # ... of the operator outside it (the laptop case)
HERE = Path(__file__).resolve().parent
NETCLIENT = HERE / "netclient.py"
EXPORTER_UID = 10001  # the exporter image's user (exporter/Dockerfile), which export Jobs run as
SERVER_UID = 1000  # the user the operator renders for model servers
INPUTS = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.0]]
INSTANCES = json.dumps({"instances": INPUTS})
TOLERANCE = 1e-5


def servedmodel(name: str, namespace: str, image: str, **spec: Any) -> dict[str, Any]:
    """A ServedModel whose pods run on the real node: the stand-in image (the only change to the pod spec)
    and the node's selector and toleration, through the ServedModel's own fields."""
    placement = RealNode.pod_placement()
    on_node = {
        "image": image,
        "imagePullPolicy": "Never",
        "nodeSelector": placement["nodeSelector"],
        "tolerations": placement["tolerations"],
        "server": {"modelConfigPollSeconds": 2, "fileSystemPollSeconds": 1},
    }
    return kubehelpers.servedmodel(name, namespace, **{**on_node, **spec})


def get_sm(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    sm = kube.get("servedmodel", name, namespace)
    assert sm is not None, f"ServedModel {namespace}/{name} is gone"
    return sm


def current(sm: dict[str, Any]) -> bool:
    return (sm.get("status") or {}).get("observedGeneration") == sm["metadata"]["generation"]


def wait_sm(kube: Kube, namespace: str, name: str, check: Check, what: str, timeout: float = 60) -> dict:
    """The ServedModel once `check(sm)` is truthy (an AssertionError it raises means "not yet")."""
    return kube.wait_until("servedmodel", name, namespace, check, f"{namespace}/{name}: {what}", timeout, 1)


def wait_ready(kube: Kube, namespace: str, name: str, timeout: float = 240) -> dict[str, Any]:
    """Ready=True for the current generation, with the versions the model server reported (the operator
    writes them with the Ready verdict once it has asked the server)."""

    def ready(sm: dict[str, Any]) -> bool:
        return current(sm) and condition(sm, "Ready").get("status") == "True" and "versions" in sm["status"]

    return wait_sm(kube, namespace, name, ready, "Ready", timeout)


def wait_newest_version(kube: Kube, namespace: str, name: str, version: int, timeout: float = 60) -> dict:
    """The ServedModel once `version` is AVAILABLE and the newest in status.versions."""
    want = [{"version": version, "state": "AVAILABLE"}]
    return wait_sm(
        kube, namespace, name, lambda sm: versions(sm)[:1] == want, f"version {version} AVAILABLE", timeout
    )


def versions(sm: dict[str, Any]) -> list[dict[str, Any]]:
    return (sm.get("status") or {}).get("versions") or []


def pods(kube: Kube, namespace: str, name: str, track: str | None = None) -> list[dict[str, Any]]:
    """The model server pods of a ServedModel (not its export Jobs' pods), terminating ones left out."""
    selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=model-server"
    if track:
        selector += f",servedmodel.io/track={track}"
    items = kube.list("pods", namespace, selector)
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def pod_ready(pod: dict[str, Any]) -> bool:
    return condition(pod, "Ready").get("status") == "True"


def restarts(pod: dict[str, Any]) -> int:
    return sum(c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def cluster_ip(kube: Kube, namespace: str, service: str) -> str:
    svc = kube.get("service", service, namespace)
    assert svc is not None, f"Service {namespace}/{service} does not exist"
    return svc["spec"]["clusterIP"]


def in_netns(node: RealNode, *args: str, timeout: float = 120) -> Any:
    """Run netclient.py in the node's network namespace; its JSON output."""
    proc = node.run_in_netns([sys.executable, str(NETCLIENT), *args], timeout=timeout)
    assert proc.returncode == 0, f"netclient {args[0]} failed: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


def rest(node: RealNode, url: str, body: str | None = None) -> tuple[int, Any]:
    out = in_netns(node, "rest", url, *([body] if body is not None else []))
    return out["status"], out["answer"]


def predict(node: RealNode, base: str, suffix: str = "") -> np.ndarray:
    """POST {"instances": INPUTS} to <base><suffix>:predict; the predictions (HTTP 200 asserted)."""
    status, answer = rest(node, f"{base}{suffix}:predict", INSTANCES)
    assert status == 200, (base + suffix, status, answer)
    return np.asarray(answer["predictions"], dtype=np.float64)


def assert_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape and np.allclose(got, want, atol=TOLERANCE), (
        what,
        got.tolist(),
        want.tolist(),
    )


class TrafficLoop:
    """A bounded client loop (netclient.py loop) in the node's namespace, running while a test changes
    things; `stop()` ends it and returns its counts. It returns once the loop has had its first answer, so
    that what the test changes next happens while the loop runs (its start takes seconds under load)."""

    def __init__(self, node: RealNode, url: str, body: str = INSTANCES, max_seconds: float = 300):
        self._dir = Path(tempfile.mkdtemp(prefix="traffic-"))
        self.stop_file = self._dir / "stop"
        started = self._dir / "started"
        self._distinct = self._dir / "distinct"
        self._out = open(self._dir / "out.json", "w+")
        cmd = [
            sys.executable, str(NETCLIENT), "loop", url, body, "--stop-file", str(self.stop_file),
            "--started-file", str(started), "--distinct-file", str(self._distinct),
            "--max-seconds", str(max_seconds),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            node.netns_argv(cmd), stdout=self._out, stderr=subprocess.PIPE, text=True
        )
        try:
            eventually(
                lambda: started.exists() or self.proc.poll() is not None, timeout=60, interval=0.1,
                what="the traffic loop's first answer",
            )  # fmt: skip
            assert started.exists(), f"the traffic loop ended before its first answer: {self.stop()}"
        except BaseException:
            self.__exit__()
            raise

    def running(self) -> bool:
        return self.proc.poll() is None

    def distinct_answers(self) -> int:
        try:
            return int(self._distinct.read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def wait_distinct_answers(self, count: int, timeout: float = 60) -> None:
        """Until the loop itself has met `count` different answers (e.g. both versions of a swap): the
        test's own request seeing the new version says nothing of the loop's next one, which under load
        can be seconds away."""
        eventually(
            lambda: self.distinct_answers() >= count or not self.running(),
            timeout=timeout, interval=0.1, what=f"the traffic loop to meet {count} different answers",
        )  # fmt: skip

    def stop(self) -> dict[str, Any]:
        self.stop_file.touch()
        try:
            _, err = self.proc.communicate(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        assert self.proc.returncode == 0, f"traffic loop failed: {err[-2000:]}"
        self._out.seek(0)
        result = json.load(self._out)
        self._out.close()
        shutil.rmtree(self._dir, ignore_errors=True)
        return result

    def __enter__(self) -> TrafficLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop_file.touch()
            self.proc.kill()
            self.proc.wait()


def start_operator(
    cluster: LocalCluster, folder: Path, namespace: str, node: RealNode | None
) -> OperatorProcess:
    """The operator for one namespace: in the node's network namespace when `node` is given (as in a pod),
    else in the host's (as on a laptop). Either way cluster DNS is its resolver, so no name it looks up
    is ever sent outside the machine (from the host's namespace the DNS Service's address is unreachable)."""
    python = [sys.executable, "-m", "servedmodel_operator"]
    if node is not None:
        cmd = node.netns_argv(python, cluster_dns=True)
    else:
        cmd = with_resolv_conf(write_cluster_resolv_conf(folder / "resolv.conf"), python)
    op = OperatorProcess(
        cluster.operator_kubeconfig,
        folder / "operator.log",
        ["--verbose", f"--namespace={namespace}"],
        {"SERVEDMODEL_RESYNC_SECONDS": "10"},
        cmd=cmd,
        liveness_host=node.ip if node is not None else "127.0.0.1",
    )
    try:
        op.wait_live()
    except BaseException:
        op.stop()
        raise
    return op


def fresh_keras_source(folder: Path, shift: float) -> tuple[Path, Any]:
    """A Keras file of model 'a' (tests/kerasmodels.py) with every bias moved by `shift`, and the model
    itself (the oracle): a source of its own, so the exporter publishes it as a new version (a source it
    published before is reported as that version)."""
    from kerasmodels import fixed_model

    model = fixed_model("a")
    kernel, bias = model.get_layer("scores").get_weights()
    model.get_layer("scores").set_weights([kernel, bias + np.float32(shift)])
    path = folder / f"a-shift-{shift:g}.keras"
    model.save(path)
    return path, model
