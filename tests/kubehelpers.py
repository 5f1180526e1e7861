"""Small helpers the integration and e2e tests share: kubectl with JSON in and out, and waiting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from localcluster import LocalCluster, free_port
from modelvolume import hostpath_claim

ROOT = Path(__file__).resolve().parents[1]
SERVEDMODEL_CRD = ROOT / "crds" / "servedmodel.io_servedmodels.yaml"
SERVEDMODEL_CRD_NAME = "servedmodels.servedmodel.io"

T = TypeVar("T")
Check = Callable[[dict[str, Any]], Any]  # a test on an object read from the API server


def eventually(fn: Callable[[], T], timeout: float = 60, interval: float = 0.5, what: str = "") -> T:
    """Call fn until it returns a truthy value without raising AssertionError; then return that value."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = None
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            detail = f": {last}" if last else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what or fn.__name__}{detail}")
        time.sleep(interval)


class Kube:
    def __init__(self, cluster: LocalCluster):
        self.cluster = cluster

    def kubectl(self, *args: str, check: bool = True, input: str | None = None):
        return self.cluster.kubectl(*args, check=check, input=input)

    def apply(self, manifest: str | dict[str, Any], *extra: str):
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        return self.kubectl("apply", "-f", "-", *extra, input=text)

    def try_apply(self, manifest: str | dict[str, Any]):
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        return self.kubectl("apply", "-f", "-", input=text, check=False)

    def install_servedmodel_crd(self) -> None:
        """Apply the ServedModel CRD from crds/ (server-side, as the docs say) and wait until it is served."""
        self.kubectl("apply", "--server-side", "-f", str(SERVEDMODEL_CRD))
        self.wait_established(SERVEDMODEL_CRD_NAME)

    def wait_established(self, crd_name: str, timeout: float = 60) -> None:
        """`kubectl wait` fails outright while a new CRD has no conditions yet, so poll the condition."""

        def established() -> bool:
            crd = self.get("crd", crd_name, "default") or {}
            return any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (crd.get("status") or {}).get("conditions") or []
            )

        eventually(established, timeout=timeout, what=f"CRD {crd_name} established")

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        proc = self.kubectl(
            "get", kind, name, "-n", namespace, "-o", "json", "--show-managed-fields", check=False
        )
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise AssertionError(proc.stderr)
        return json.loads(proc.stdout)

    def list(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", kind, "-n", namespace, "-o", "json"]
        if selector:
            args += ["-l", selector]
        return json.loads(self.kubectl(*args).stdout)["items"]

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        items = self.list("events", namespace)
        return [e for e in items if e["involvedObject"].get("name") == name]

    def wait_until(
        self,
        kind: str,
        name: str,
        namespace: str,
        check: Check,
        what: str,
        timeout: float = 60,
        interval: float = 0.5,
    ) -> dict[str, Any]:
        """The object once `check(obj)` is truthy (an AssertionError it raises means "not yet"), read once per
        try so the object returned is the one checked. A missing object is "not yet" too."""

        def fetch() -> dict[str, Any] | None:
            obj = self.get(kind, name, namespace)
            assert obj is not None, f"{kind} {namespace}/{name} does not exist"
            return obj if check(obj) else None

        return eventually(fetch, timeout=timeout, interval=interval, what=what)

    def wait_condition(
        self,
        kind: str,
        name: str,
        namespace: str,
        ctype: str,
        what: str = "",
        timeout: float = 60,
        interval: float = 0.5,
        **fields: str,
    ) -> dict[str, Any]:
        """The object once its condition `ctype` has every field given (`status="True"`, `reason=...`)."""
        assert fields, "wait_condition needs a field to wait for (status=..., reason=...)"

        def meets(obj: dict[str, Any]) -> bool:
            found = condition(obj, ctype)
            assert all(found.get(k) == v for k, v in fields.items()), f"{ctype} is {found or 'not set'}"
            return True

        wanted = " ".join(f"{k}={v}" for k, v in fields.items())
        what = what or f"{kind} {namespace}/{name}: {ctype} {wanted}"
        return self.wait_until(kind, name, namespace, meets, what, timeout, interval)


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == ctype:
            return cond
    return {}


def pvc(name: str, namespace: str) -> str:
    """A claim and a volume bound to it: pods with an unbound claim would never be scheduled. The host
    folder need not exist (kwok's pods mount nothing)."""
    return hostpath_claim(
        namespace, f"/srv/models/{namespace}/{name}", claim=name, reclaim="Delete", path_type=None
    )


def servedmodel(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    body = {"storage": {"persistentVolumeClaim": {"claimName": "models"}, "path": name}}
    body.update(spec)
    return {
        "apiVersion": "servedmodel.io/v1alpha1",
        "kind": "ServedModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def create_under_an_older_crd(kube: Kube, manifest: dict[str, Any]) -> None:
    """Store a ServedModel the current CRD refuses by its name, as a release before the name rule did: the
    rule is dropped, the object created, and the CRD from crds/ put back (and in effect) before returning."""
    rule = [{"op": "remove", "path": "/spec/versions/0/schema/openAPIV3Schema/x-kubernetes-validations"}]
    kube.kubectl("patch", "crd", SERVEDMODEL_CRD_NAME, "--type=json", "-p", json.dumps(rule))
    try:
        eventually(
            lambda: kube.try_apply(manifest).returncode == 0, timeout=30, what="the relaxed CRD in effect"
        )
    finally:
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(SERVEDMODEL_CRD))
        name = manifest["metadata"]["name"]
        probe = {**manifest, "metadata": {**manifest["metadata"], "name": f"again.{name}"}}
        eventually(
            lambda: "DNS label" in kube.try_apply(probe).stderr,
            timeout=30,
            what="the current CRD back in effect",
        )


class OperatorProcess:
    """The operator run as users run it: a separate process, with the identity its kubeconfig gives it."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        cmd: Sequence[str] | None = None,
        liveness_host: str = "127.0.0.1",
    ):
        self.log_path = log_path
        self.port = free_port()
        # Where the host reaches the liveness endpoint: 127.0.0.1, or the operator's own address when it
        # runs in another network namespace.
        self.liveness_host = liveness_host
        base = list(cmd or [sys.executable, "-m", "servedmodel_operator"])
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [*base, f"--liveness=http://{liveness_host}:{self.port}/healthz", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(kubeconfig), **(env or {})},
            cwd=ROOT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_live(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(
                    f"http://{self.liveness_host}:{self.port}/healthz", timeout=2
                ) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"operator liveness endpoint did not answer in {timeout}s:\n{self.tail()}")

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    log_text = text

    def tail(self, chars: int = 4000) -> str:
        return self.text()[-chars:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
