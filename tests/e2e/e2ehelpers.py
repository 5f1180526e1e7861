"""Helpers of the e2e tests: helm/kubectl as a user runs them, the chart's identity, the audit log, and the
real operator process run with the chart's ServiceAccount token."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubehelpers import OperatorProcess
from localcluster import LocalCluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "servedmodel-operator"
CRD_NAME = "servedmodels.servedmodel.io"
# Namespaces whose ServiceAccounts the control plane audits fully, reads included (see AUDIT_POLICY in
# tools/controlplane/localcluster.py): the chart is installed there when its identity is under test.
SYSTEM_NAMESPACE = "servedmodel-system"
RBAC_NAMESPACE = "servedmodel-e2e-rbac"


@dataclass
class UserTools:
    """helm and kubectl as a cluster admin runs them (the admin kubeconfig of the local control plane)."""

    bin_dir: Path
    kubeconfig: Path | None = None

    def _run(
        self, tool: str, args: tuple[str, ...], check: bool, input: str | None, kubeconfig: Path | None
    ) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.bin_dir / "helm-home" / "cache"),
            "HELM_CONFIG_HOME": str(self.bin_dir / "helm-home" / "config"),
            "HELM_DATA_HOME": str(self.bin_dir / "helm-home" / "data"),
        }
        kc = kubeconfig or self.kubeconfig
        if kc is not None:
            env["KUBECONFIG"] = str(kc)
        proc = subprocess.run(
            [str(self.bin_dir / tool), *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=180,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def helm(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        return self._run("helm", args, check, input, None)

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess:
        return self._run("kubectl", args, check, input, kubeconfig)

    def get_json(self, *args: str, kubeconfig: Path | None = None) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json", kubeconfig=kubeconfig).stdout)

    def exists(self, *args: str) -> bool:
        proc = self.kubectl("get", *args, "-o", "name", check=False)
        if proc.returncode == 0:
            return True
        assert "NotFound" in proc.stderr or "not found" in proc.stderr, proc.stderr
        return False

    def render(
        self, *args: str, release: str = "servedmodel-operator", namespace: str = SYSTEM_NAMESPACE
    ) -> str:
        return self.helm("template", release, str(CHART), "--namespace", namespace, *args).stdout


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def ensure_namespace(admin: UserTools, name: str, restricted: bool = True) -> None:
    """A namespace that enforces the restricted Pod Security Standard, as a careful cluster admin makes."""
    labels = {"pod-security.kubernetes.io/enforce": "restricted"} if restricted else {}
    admin.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        ),
    )


def wait_for(fn, timeout: float = 60, interval: float = 0.5, what: str = ""):
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
            last = value
        except AssertionError as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}: {last}")


# -- the chart's identity ----------------------------------------------------------------------------------


def service_account_kubeconfig(
    admin: UserTools, cluster: LocalCluster, namespace: str, sa: str, path: Path
) -> Path:
    """A kubeconfig holding a fresh token of `sa` (kubectl create token), the cluster's server and CA."""
    token = admin.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    admin_cfg = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin_cfg["clusters"][0]["cluster"]["server"]
    ca = admin_cfg["clusters"][0]["cluster"]["certificate-authority"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": ca}}],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [
                    {"name": "local", "context": {"cluster": "local", "user": sa, "namespace": namespace}}
                ],
                "current-context": "local",
            }
        )
    )
    return path


def audit_events(cluster: LocalCluster, username: str, since: float) -> list[dict]:
    """Every request of `username` since the epoch time `since` (reads too, for audited users), once each:
    its ResponseComplete record, or its ResponseStarted one while it is still running (a watch)."""
    events: dict[str, dict] = {}
    if not cluster.audit_log.exists():
        return []
    for line in cluster.audit_log.read_text().splitlines():
        event = json.loads(line)
        if event.get("user", {}).get("username") != username:
            continue
        if event.get("stage") not in ("ResponseStarted", "ResponseComplete"):
            continue
        when = dt.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if when.timestamp() >= since and (
            event["stage"] == "ResponseComplete" or event["auditID"] not in events
        ):
            events[event["auditID"]] = event
    return list(events.values())


def describe(event: dict) -> str:
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    group = ref.get("apiGroup") or "core"
    code = event["responseStatus"]["code"]
    return f"{event['verb']} {group}/{resource} ns={ref.get('namespace', '-')} -> {code}"


class ChartOperator(OperatorProcess):
    """The operator with a chart ServiceAccount's kubeconfig, logging JSON as the chart runs it."""

    def __init__(self, kubeconfig: Path, log_path: Path, args: list[str], model_server_url: str):
        super().__init__(
            kubeconfig,
            log_path,
            ["--log-format=json", *args],
            {
                "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), os.environ.get("PYTHONPATH", "")]),
                "SERVEDMODEL_RESYNC_SECONDS": "5",
                # kwok runs no TF Serving: tests/modelfleet.py answers the operator's polls.
                "SERVEDMODEL_MODEL_SERVER_URL": model_server_url,
            },
        )
