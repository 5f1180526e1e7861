"""A real, throw-away Kubernetes cluster on this machine: etcd, kube-apiserver (RBAC on),
kube-controller-manager, kube-scheduler, kwok (fake kubelets, so pods get scheduled and turn Ready) and,
on request, one real node (containerd, kubelet, kube-proxy, CoreDNS: see realnode.py).

Used by the test suite (as a pytest fixture) and by `make demo`. Binaries come from `build.sh` (and
`build-node.sh` for the real node), which build them from the Go module proxy into a cache folder outside
the clone.

Network: as root, each cluster takes a network slot N (nodenet.py): the API server listens only on
10.200.N.1, the host side of a veth pair into the namespace of the cluster's real node, so pods reach it;
etcd stays on 127.0.0.1. Without root (no real node possible) everything stays on 127.0.0.1.

    python tools/controlplane/localcluster.py up --dir /tmp/cp [--real-node]  # start, print KUBECONFIG, wait
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import processes
from nodenet import Slot, acquire_slot
from testpki import CA, new_key, pem_key

if TYPE_CHECKING:
    from realnode import RealNode

HERE = Path(__file__).resolve().parent
SERVICE_CIDR = "10.96.0.0/20"  # 4094 Services: room for benchmarks with 1000 ServedModels
NODE_NAME = "kwok-node-0"
# An identity outside system:masters for the code under test: tests grant it exactly the rights they mean.
OPERATOR_USER = "servedmodel-operator-test"
# Only writes are audited: tests read the log to count what each identity changed. Exception (first rule):
# every request, reads too, of the service accounts in the namespaces the e2e tests install the Helm chart
# into, so the RBAC tests can find every 403 the chart's ServiceAccount received.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: [system:serviceaccounts:servedmodel-system, system:serviceaccounts:servedmodel-e2e-rbac]
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
"""


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message says which part and why."""


def build_binaries() -> Path:
    """Build (or find in the cache) the control-plane binaries and return their folder."""
    proc = subprocess.run(["bash", str(HERE / "build.sh")], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"building the control plane failed (exit {proc.returncode}); see the log above"
        )
    return Path(proc.stdout.strip().splitlines()[-1])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def issue_client_cert(pki: Path, stem: str, common_name: str, organizations: list[str]) -> tuple[Path, Path]:
    """A client certificate signed by the cluster CA (`pki/ca.key`): the API server maps the common name to
    the user and the organizations to groups. Returns (certificate, key) paths `pki/<stem>.crt/.key`."""
    crt_path, key_path = pki / f"{stem}.crt", pki / f"{stem}.key"
    CA.load(pki / "ca.crt", pki / "ca.key").issue_client(common_name, organizations, crt_path, key_path)
    return crt_path, key_path


def _write_pki(pki: Path, host: str = "127.0.0.1") -> None:
    """A CA, the API server's serving certificate (valid for `host`), the API server's client certificate
    for kubelets, and the service-account signing key pair."""
    from cryptography.hazmat.primitives import serialization

    pki.mkdir(parents=True, exist_ok=True)
    ca = CA.create("servedmodel-test-ca")
    ca.write(pki / "ca.crt", pki / "ca.key")
    ips = ["127.0.0.1", "10.96.0.1"] + ([host] if host != "127.0.0.1" else [])
    ca.issue_server(
        "kube-apiserver",
        pki / "apiserver.crt",
        pki / "apiserver.key",
        dns=["localhost", "kubernetes", "kubernetes.default.svc"],
        ips=ips,
    )
    sa_key = new_key()
    (pki / "sa.key").write_bytes(pem_key(sa_key))
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    # kubectl logs/exec: the API server authenticates to kubelets as a cluster admin.
    issue_client_cert(pki, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"])


def kubeconfig_text(server: str, ca_file: Path, user: str, token: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {server}
    certificate-authority: {ca_file}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: local
  context: {{cluster: local, user: {user}, namespace: default}}
current-context: local
"""


@dataclass
class LocalCluster:
    """One control plane in `workdir`. `start()` blocks until the API server is ready and a node exists."""

    workdir: Path
    bin_dir: Path | None = None
    with_kwok: bool = True
    # Start one real node too (also possible later: start_real_node()).
    with_real_node: bool = False
    # A network slot of its own (nodenet.py). None: when running as root, which the real node needs.
    isolated_network: bool | None = None
    log_dir: Path | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    server: str = ""
    slot: Slot | None = None
    real_node: RealNode | None = None
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    operator_token: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        """Credentials of OPERATOR_USER, which has no rights until a test binds a role to it."""
        return self.workdir / "operator.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def audited_writes(self, username: str, since: float = 0.0) -> list[dict]:
        """Write requests `username` made (after the epoch time `since`), from the API server's audit log."""
        import json

        events = []
        if not self.audit_log.exists():
            return events
        for line in self.audit_log.read_text().splitlines():
            event = json.loads(line)
            if event.get("user", {}).get("username") != username or event.get("stage") != "ResponseComplete":
                continue
            when = dt.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
            if when.timestamp() >= since:
                events.append(event)
        return events

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """Run the control plane's own kubectl as admin."""
        assert self.bin_dir is not None
        cmd = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the API server listens on."""
        return self.slot.host_ip if self.slot else "127.0.0.1"

    def start(self, timeout: float = 120) -> LocalCluster:
        if self.bin_dir is None:
            self.bin_dir = build_binaries()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir = self.log_dir or self.workdir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        isolated = self.isolated_network
        if isolated is None:
            isolated = self.with_real_node or os.geteuid() == 0
        if isolated:
            # First of all: the unreachable routes and this run's namespace, veth pair and addresses.
            self.slot = acquire_slot()
        pki = self.workdir / "pki"
        try:
            _write_pki(pki, self.host)
        except BaseException:
            self._release_slot()
            raise
        tokens = {
            "admin": (self.admin_token, "admin", "system:masters"),
            "controller-manager": (secrets.token_hex(16), "system:kube-controller-manager", ""),
            "scheduler": (secrets.token_hex(16), "system:kube-scheduler", ""),
            "operator": (self.operator_token, OPERATOR_USER, ""),
        }
        (self.workdir / "tokens.csv").write_text(
            "".join(f'{tok},{user},{user},"{groups}"\n' for tok, user, groups in tokens.values())
        )
        (self.workdir / "audit-policy.yaml").write_text(AUDIT_POLICY)
        deadline = time.monotonic() + timeout
        try:
            self._start_etcd(deadline)
            self._start_apiserver(pki, deadline)
            for name, (tok, user, _) in tokens.items():
                text = kubeconfig_text(self.server, self.ca_file, user, tok)
                path = self.kubeconfig if name == "admin" else self.workdir / f"{name}.kubeconfig"
                path.write_text(text)
            self._start_controller_manager(pki)
            self._start_scheduler()
            if self.with_kwok:
                self._start_kwok()
                self._create_node()
            self._wait_default_service_account(deadline)
            if self.with_real_node:
                self.start_real_node()
        except BaseException:
            self.stop()
            raise
        return self

    def start_real_node(self, timeout: float = 180) -> RealNode:
        """Start the cluster's real node (containerd, kubelet, kube-proxy, CoreDNS) in the cluster's network
        namespace; returns once the node is Ready and cluster DNS answers. See realnode.py."""
        from realnode import RealNode

        if self.real_node is not None:
            return self.real_node
        if self.slot is None:
            raise ControlPlaneError(
                "a real node needs the cluster's own network slot (isolated_network, root)"
            )
        self.real_node = RealNode(self).start(timeout=timeout)
        return self.real_node

    def _release_slot(self) -> None:
        if self.slot is not None:
            self.slot.release()
            self.slot = None

    def stop(self) -> None:
        """Stop the real node (pods first), then every component, API clients first, etcd last; then give
        up the network slot. Idempotent."""
        try:
            if self.real_node is not None:
                self.real_node.stop()
                self.real_node = None
        finally:
            try:
                self._stop_components()
            finally:
                self._release_slot()

    def _stop_components(self) -> None:
        for name in ["kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]:
            processes.terminate(self.processes.pop(name, None))

    def restart_component(self, name: str, down_seconds: float = 0.0, timeout: float = 60) -> None:
        """Stop one component (SIGTERM, then SIGKILL) and start it again with the same arguments: same
        ports, same data folder, same certificates. Clients see a real outage of `down_seconds` or more."""
        proc = self.processes[name]
        args = list(proc.args[1:])  # argv as first started, without the binary
        processes.terminate(proc)
        time.sleep(down_seconds)
        self._spawn(name, args)
        deadline = time.monotonic() + timeout
        if name == "etcd":
            self._wait_http("etcd", f"{self.etcd_url}/health", deadline)
        elif name == "kube-apiserver":
            self._wait_http("kube-apiserver", f"{self.server}/readyz", deadline, token=self.admin_token)

    def restart_apiserver(self, down_seconds: float = 0.0, timeout: float = 60) -> None:
        """Restart kube-apiserver on the same port; returns once /readyz answers again."""
        self.restart_component("kube-apiserver", down_seconds, timeout)

    def restart_etcd(self, down_seconds: float = 0.0, timeout: float = 60) -> None:
        """Restart etcd with the same ports and data folder (the API server reconnects by itself)."""
        self.restart_component("etcd", down_seconds, timeout)
        # The API server is ready again only once it has reconnected to etcd.
        deadline = time.monotonic() + timeout
        self._wait_http("kube-apiserver", f"{self.server}/readyz", deadline, token=self.admin_token)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- components --------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        assert self.bin_dir is not None and self.log_dir is not None
        proc = processes.spawn([str(self.bin_dir / name), *args], self.log_dir / f"{name}.log")
        self.processes[name] = proc
        return proc

    def _check_alive(self, name: str) -> None:
        assert self.log_dir is not None
        report = processes.exit_report(self.processes[name], name, self.log_dir / f"{name}.log")
        if report is not None:
            raise ControlPlaneError(report)

    def _start_etcd(self, deadline: float) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync",  # a throw-away test store: durability buys nothing here
                "--log-level=warn",
            ],
        )
        self._wait_http("etcd", f"{self.etcd_url}/health", deadline)

    def _start_apiserver(self, pki: Path, deadline: float) -> None:
        port = free_port(self.host)
        self.server = f"https://{self.host}:{port}"
        pki_flags = [
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
        ]
        # The `kubernetes` Service points at the advertised address: pods reach it on the real node. A
        # loopback address is no valid endpoint, hence no reconciler without a network slot.
        reconciler = "lease" if self.slot else "none"
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={self.host}",
                f"--advertise-address={self.host}",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                # As OpenShift runs it: setting blockOwnerDeletion on an owner reference needs `update` on the
                # owner's finalizers subresource, so the operator's role must grant servedmodels/finalizers.
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--allow-privileged=true",
                f"--endpoint-reconciler-type={reconciler}",
                *pki_flags,
                f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--v=1",
            ],
        )
        self._wait_http("kube-apiserver", f"{self.server}/readyz", deadline, token=self.admin_token)

    def _start_controller_manager(self, pki: Path) -> None:
        kc = self.workdir / "controller-manager.kubeconfig"
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--v=1",
            ],
        )

    def _start_scheduler(self) -> None:
        kc = self.workdir / "scheduler.kubeconfig"
        config = self.workdir / "scheduler.yaml"
        config.write_text(
            "apiVersion: kubescheduler.config.k8s.io/v1\n"
            "kind: KubeSchedulerConfiguration\n"
            f"clientConnection: {{kubeconfig: {kc}, qps: 200, burst: 400}}\n"
            "leaderElection: {leaderElect: false}\n"
        )
        self._spawn(
            "kube-scheduler",
            [
                f"--config={config}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--secure-port=0",
                "--v=1",
            ],
        )

    def _start_kwok(self) -> None:
        assert self.bin_dir is not None
        config = self.workdir / "kwok.yaml"
        config.write_text(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\n"
            "options: {nodePlayStageParallelism: 4, podPlayStageParallelism: 8}\n---\n"
            + (self.bin_dir / "kwok-stages.yaml").read_text()
        )
        self._spawn(
            "kwok",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--config={config}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--cidr=10.244.0.0/24",
                "--node-ip=10.244.0.1",
                "--server-address=",
            ],
        )

    def _create_node(self) -> None:
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=f"""apiVersion: v1
kind: Node
metadata:
  name: {NODE_NAME}
  annotations: {{kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}}
  labels: {{kubernetes.io/hostname: {NODE_NAME}, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}}
status:
  allocatable: {{cpu: "64", memory: 512Gi, pods: "1000", nvidia.com/gpu: "8"}}
  capacity: {{cpu: "64", memory: 512Gi, pods: "1000", nvidia.com/gpu: "8"}}
""",
        )

    def _wait_default_service_account(self, deadline: float) -> None:
        """Pods cannot be created before the service-account controller made `default`."""
        while time.monotonic() < deadline:
            self._check_alive("kube-controller-manager")
            if self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0:
                return
            time.sleep(0.3)
        raise ControlPlaneError("kube-controller-manager did not create the default ServiceAccount in time")

    def _wait_http(self, name: str, url: str, deadline: float, token: str | None = None) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca_file)) if url.startswith("https") else None
        last = ""
        while time.monotonic() < deadline:
            self._check_alive(name)
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
            try:
                with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
                    if resp.status == 200:
                        return
            except Exception as exc:  # not up yet: connection refused, 500 while post-start hooks run
                last = str(exc)
            time.sleep(0.2)
        raise ControlPlaneError(f"{name} was not ready at {url} in time (last error: {last})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the binaries (or find them in the cache) and print their folder")
    up = sub.add_parser("up", help="start a control plane and keep it running until interrupted")
    up.add_argument("--dir", type=Path, help="working folder (default: a new temporary folder)")
    up.add_argument("--ready-file", type=Path, help="write the kubeconfig path here once ready")
    up.add_argument("--real-node", action="store_true", help="also start a real node (containerd, kubelet)")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build_binaries())
        return 0
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="servedmodel-cp-"))
    cluster = LocalCluster(workdir=workdir, with_real_node=args.real_node)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    cluster.start()
    print(f"control plane ready: KUBECONFIG={cluster.kubeconfig}", flush=True)
    if cluster.real_node is not None:
        print(
            f"real node {cluster.real_node.name} ready (network namespace {cluster.real_node.netns})",
            flush=True,
        )
    if args.ready_file:
        args.ready_file.write_text(str(cluster.kubeconfig))
    try:
        while not stop["now"]:
            for name in list(cluster.processes):
                cluster._check_alive(name)
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
